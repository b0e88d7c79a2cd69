"""``stgraph`` command line: one module per command group, each with its parsers and handlers.

* :mod:`~stgraph.cli.data`: ``data {info,synth,download,list}``;
* :mod:`~stgraph.cli.graph`: ``graph {build,info}``;
* :mod:`~stgraph.cli.runs`: ``train``, ``evaluate``, ``predict``, ``plot`` (over :mod:`stgraph.api`);
* :mod:`~stgraph.cli.bench`: ``bench``;
* :mod:`~stgraph.cli.federated`: ``federated {simulate,server,client,partition}``;
* :mod:`~stgraph.cli.online`: ``update`` and ``drift``;
* :mod:`~stgraph.cli.serve`: ``serve``, ``explain`` and ``report``.

Every command's failure prints one line on stderr (``error: ...``) and exits
non-zero; ``--debug`` shows the traceback. ``--json`` prints exactly one JSON
object on stdout. The library's log messages are shown on stdout (:mod:`stgraph.logs`): ``-v``
adds the debug messages, ``-q`` keeps warnings only. ``--debug``, ``-v`` and ``-q`` may stand anywhere.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import StgraphError, one_line
from . import bench, data, federated, graph, online, runs, serve
from .common import in_flags

#: command -> the module of its group (``add_parser(sub)`` and ``run(args)``)
COMMANDS = {"data": data, "graph": graph, "train": runs, "evaluate": runs, "predict": runs, "plot": runs,
            "bench": bench, "federated": federated, "update": online, "drift": online, "serve": serve,
            "explain": serve, "report": serve}

#: the global flags, taken from anywhere on the command line
GLOBAL_FLAGS = {"--debug": "debug", "-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message):  # noqa: D401 - argparse hook
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stgraph", description="Spatio-temporal graph forecasting on traffic sensors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="show debug messages too")
    loud.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    sub = p.add_subparsers(dest="command", required=True)
    for group in dict.fromkeys(COMMANDS.values()):
        group.add_parser(sub)
    return p


def _parse(parser, argv: list[str]):
    """The parsed command; the global flags may stand anywhere (``stgraph train ... -v``)."""
    flags = [a for a in argv if a in GLOBAL_FLAGS]
    rest = [a for a in argv if a not in GLOBAL_FLAGS]
    args = parser.parse_args(flags + rest)
    # `train --devices K` relaunches the command under torchrun, with the same verbosity
    args.argv = [a for a in flags if a != "--debug"] + rest
    return args


def main(argv=None) -> int:
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    import warnings
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {in_flags(str(message))}\n"
    from ..logs import show_messages
    try:
        from ..runtime import tune_malloc
        tune_malloc()
        with show_messages(verbose=args.verbose, quiet=args.quiet, as_json=getattr(args, "json", False),
                           rewrite=in_flags):
            return int(COMMANDS[args.command].run(args) or 0)
    except BrokenPipeError:  # `stgraph ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (StgraphError, OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"error: {in_flags(one_line(e))}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the last resort: never a traceback without --debug
        if args.debug:
            raise
        print(f"error: stgraph {_inputs(args)} failed: {type(e).__name__}: "
              f"{in_flags(one_line(e, with_type=False))}; this is an unexpected failure: rerun with --debug to see "
              f"where, and report it", file=sys.stderr)
        return 2


def _inputs(args) -> str:
    """``train --data x.h5 --graph g.pkl --out runs/a``: the command and the files it was given."""
    words = [str(args.command)] + ([str(args.action)] if getattr(args, "action", None) else [])
    for name in ("run_dir", "path", "name"):
        if getattr(args, name, None):
            words.append(str(getattr(args, name)))
    for name in ("data", "graph", "dataset", "config", "model", "out"):
        v = getattr(args, name, None)
        if v:
            words.append(f"--{name} {v}")
    return " ".join(words)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
