"""The training progress bar (tqdm): batches done of all epochs, or with a CPU budget the CPU seconds used of it;
loss and learning rate on every step, one line per finished epoch."""
from __future__ import annotations


class TrainingBar:
    """A tqdm bar over ``epochs x n_batches`` batches, or over ``budget_seconds`` CPU seconds when a budget is set;
    ``state`` is the trainer's progress (epoch, batch, cpu_seconds), where a resumed run starts the bar."""

    def __init__(self, epochs: int, n_batches: int, budget_seconds: float, state: dict) -> None:
        from tqdm.auto import tqdm

        self.epochs, self.budget = epochs, budget_seconds
        if budget_seconds:  # the bar counts the budget's CPU seconds
            self.bar = tqdm(total=round(budget_seconds, 1), unit="cpu s", dynamic_ncols=True, leave=True,
                            initial=round(min(state["cpu_seconds"], budget_seconds), 1))
        else:
            self.bar = tqdm(total=epochs * n_batches, initial=state["epoch"] * n_batches + state["batch"],
                            unit="batch", dynamic_ncols=True, leave=True)

    def step(self, epoch: int, loss: float, lr: float, cpu_seconds: float) -> None:
        """One training step of ``epoch`` (0-based) with its loss and learning rate."""
        bar, rate = self.bar, f"{lr:.2e}"
        if self.budget:
            bar.update(round(min(cpu_seconds, self.budget), 1) - bar.n)
            bar.set_description(f"epoch {epoch + 1}")
            bar.set_postfix(loss=f"{loss:.4f}", lr=rate, budget=f"{100 * cpu_seconds / self.budget:.0f}%",
                            refresh=False)
            return
        bar.update(1)
        bar.set_description(f"epoch {epoch + 1}/{self.epochs}")
        bar.set_postfix(loss=f"{loss:.4f}", lr=rate, refresh=False)

    def epoch_done(self, epoch: int, train_loss: float, val_mae: float, improved: bool, cpu_seconds: float,
                   budget_minutes: float) -> None:
        """The line of a finished epoch (``*``: a new best validation MAE)."""
        used = f"  CPU {cpu_seconds / 60:.2f} of {budget_minutes:g} min" if self.budget else ""
        self.bar.write(f"epoch {epoch + 1}: train loss {train_loss:.4f}  val MAE {val_mae:.4f}{used}"
                       f"{'  *' if improved else ''}")

    def close(self) -> None:
        self.bar.close()


__all__ = ["TrainingBar"]
