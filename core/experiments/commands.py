"""
`python -m core experiment ...`: hyperparameter searches from a shell.

    python -m core experiment run SPEC.toml [--data FILE] [--trials N] [--workers K] [--ray ADDRESS]
                                            [--no-prune] [--json] [--detach]
    python -m core experiment show NAME [--json]    {name, trials: [{number, params, state, dev_loss, run,
                                                     backend, node}], best, status, test}
    python -m core experiment test NAME [--json]    {trial, test_loss, computed_at}: once, then the record
    python -m core experiment stop NAME             ask its coordinator to stop (its trials stop too)
    python -m core experiment list [--json]

`run` waits for the end, printing a line per trial; `--detach` starts the coordinator in its own process
group and returns at once (the page does the same). Running a spec whose experiment exists resumes it.
--ray (or ZTH_RAY_ADDRESS) runs the trials on a Ray cluster, never on the local pool in its place.
"""

import json
import sys
import time

from core.runs import settings


def add_parser(sub):
    """The `experiment` command and its subcommands, on core.cli's parser."""
    e = sub.add_parser("experiment", help="hyperparameter searches judged on the dev split; the test split once")
    es = e.add_subparsers(dest="experiment_cmd", required=True, parser_class=type(e))
    r = es.add_parser("run", help="run (or resume) the experiment a TOML spec describes")
    r.add_argument("spec", help="a TOML file: name, model, preset, trials, sampler, [fixed], [space] "
                                "(see core/experiments/spec.py)")
    r.add_argument("--data", help="a word list (default: the spec's data, else the offline SSA names)")
    r.add_argument("--trials", type=int, help="the budget in trials (overrides the spec's)")
    r.add_argument("--workers", type=int, help="trials at once (default: the cores, under the server's cap; "
                                               "on Ray: the cluster's CPUs)")
    r.add_argument("--ray", metavar="ADDRESS", help="a Ray cluster, HOST:PORT or ray://HOST:PORT "
                                                    "(default: $ZTH_RAY_ADDRESS; unset: the local pool)")
    r.add_argument("--no-prune", action="store_true", help="let every trial train to its last step")
    r.add_argument("--json", action="store_true", help="end with `show --json`'s object")
    r.add_argument("--detach", action="store_true", help="start the coordinator in the background and return")
    for name, help_ in (("show", "the trials, their dev losses and the best"),
                        ("test", "the best trial's test loss: computed once, recorded"),
                        ("stop", "stop a running experiment")):
        c = es.add_parser(name, help=help_)
        c.add_argument("name")
        if name != "stop":
            c.add_argument("--json", action="store_true")
    ls = es.add_parser("list", help="every experiment in the data directory")
    ls.add_argument("--json", action="store_true")


def main(args, out=print):
    # optuna, torch and the runs file load here, not at the top: a mistyped command is answered at once
    return {"run": run, "show": show, "test": test, "stop": stop, "list": list_all}[args.experiment_cmd](args, out)


def ray_address(args):
    return args.ray or settings.ray_address()


def run(args, out):
    from core.experiments import coordinator, spec, study
    if args.trials is not None and args.trials < 1:
        raise ValueError("--trials must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    exp = spec.load(args.spec, data=args.data, trials=args.trials)
    if args.no_prune:
        exp.prune = False
    ray = ray_address(args)
    if study.running(exp.name):
        raise ValueError(f"experiment {exp.name!r} is running already: python -m core experiment show {exp.name}")
    if args.detach:
        if ray:  # a cluster that is not there is refused now, not in the background
            from core.runs.ray_backend import check  # Ray is optional (requirements-ray.txt)
            check(ray)
        pid = coordinator.detach(exp, args.workers, ray)
        res = dict(name=exp.name, pid=pid, status="started", backend="ray" if ray else "local")
        out(json.dumps(res) if args.json else f"experiment {exp.name} started in the background (pid {pid}): "
                                              f"python -m core experiment show {exp.name}")
        return 0
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else out
    coordinator.serve(exp, coordinator.backend_for(args.workers, ray), out=log)
    s = study.summary(exp.name)
    if args.json:
        out(_dumps(_public(s)))
    return 0 if s["status"] == "finished" else 1


def _public(s):
    """`show --json`: the trial rows as the issue names them, plus best, status and the test record."""
    keys = ("number", "params", "state", "dev_loss", "run", "backend", "node", "why", "step")
    return dict(name=s["name"], trials=[{k: t[k] for k in keys} for t in s["trials"]], best=s["best"],
                status=s["status"], test=s["test"])


def _dumps(obj):
    from core.runs import strict_json
    return strict_json.dumps(obj)


def show(args, out):
    from core.experiments import study
    s = study.summary(args.name)
    if args.json:
        out(_dumps(_public(s)))
        return 0
    out(f"{s['name']}: {s['status']}, {len(s['trials'])} trials")
    for t in sorted(s["trials"], key=lambda t: (t["dev_loss"] is None, t["dev_loss"] or 0)):
        dev = "" if t["dev_loss"] is None else f"{t['dev_loss']:.4f}"
        params = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in t["params"].items())
        out(f"  trial {t['number']:>3} {t['state']:<9} dev {dev:<7} {params}  run {t['run']} "
            f"({t['backend']}, {t['node']})" + (f"  {t['why'].splitlines()[0]}" if t["why"] else ""))
    if s["best"]:
        out(f"best: trial {s['best']['number']}, dev {s['best']['dev_loss']:.4f}")
    if s["test"]:
        out(f"test: {s['test']['test_loss']:.4f} (trial {s['test']['trial']}, computed {s['test']['computed_at']})")
    return 0


def test(args, out):
    from core.experiments import study
    res, now = study.evaluate_test(args.name)
    if args.json:
        out(_dumps(dict(trial=res["trial"], test_loss=res["test_loss"], computed_at=res["computed_at"],
                        recorded=not now)))
        return 0
    out(f"test loss {res['test_loss']:.4f} (trial {res['trial']}, dev {res['dev_loss']:.4f})" +
        (": computed now, once; it is recorded and will not be computed again" if now else
         f": recorded at {res['computed_at']}; the test split is looked at once, so it is not computed again"))
    return 0


def stop(args, out):
    from core.experiments import study
    pid = study.stop(args.name)
    if pid is None:
        out(f"experiment {args.name} is not running")
        return 0
    t0 = time.time()
    while study.running(args.name) and time.time() - t0 < 60:
        time.sleep(0.2)
    out(f"experiment {args.name} is {study.summary(args.name)['status']}")
    return 0


def list_all(args, out):
    from core.experiments import study
    rows = []
    for name in study.names():
        s = study.summary(name)
        rows.append(dict(name=name, status=s["status"], trials=len(s["trials"]),
                         best=None if s["best"] is None else s["best"]["dev_loss"]))
    if args.json:
        out(_dumps(dict(experiments=rows)))
        return 0
    for r in rows:
        out(f"{r['name']:<24} {r['status']:<11} {r['trials']:>4} trials  best {r['best']}")
    return 0

