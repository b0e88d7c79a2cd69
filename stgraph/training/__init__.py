"""Training: one trainer for every model, checkpoints, and run directories.

* :mod:`.run`: :func:`~.run.train` (a run into its directory) and :class:`~.run.Run` (a finished run: evaluate,
  predict); :mod:`.prepare` builds what a run is made of, :mod:`.checks` what it checks and reports,
  :mod:`.resume` what may continue or replace it;
* :mod:`.forecaster`: :class:`~.forecaster.Forecaster`, a model with its graph, data and device that forecasts
  in data units; :mod:`.trainer`: :class:`~.trainer.Trainer`, which fits one, with :mod:`.losses` (masked loss,
  FedProx), :mod:`.batches` (batch sources), :mod:`.schedule` (the one cosine), :mod:`.budget` (CPU budget and
  snapshot marks), :mod:`.history` (``metrics.csv``) and :mod:`.progress` (the tqdm bar);
* :mod:`.writer`: the one run writer (``config.yaml``, ``run.json``, checkpoints, fingerprint, atomic swap);
  :mod:`.layout`: the one table of a run directory's file names; :mod:`.checkpoint`: atomic checkpoint files;
* :mod:`.axes`: which weight axes are per sensor; :mod:`.memory`: will a run fit in memory;
  :mod:`.distributed`: data parallel under ``torchrun``.
"""
