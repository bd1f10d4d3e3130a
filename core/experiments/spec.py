"""
An experiment, as a small TOML file: a lecture model, a search space over its hyperparameters, a budget.

    name = "lr-and-width"
    model = "mlp"
    preset = "kaiming"
    trials = 20                  # the budget: this many trials...
    minutes = 0                  # ...or this many minutes, whichever ends first (0: no time limit)
    sampler = "tpe"              # or "grid", "random"
    prune = true                 # stop trials whose dev loss at a checkpoint is far behind
    seed = 0                     # the sampler's seed (each trial's own seed is in [fixed] or [space])
    goal = 2.10                  # optional: the dev loss to beat ("beat val 2.10"), drawn on the page
    data = "names.txt"           # optional: a word list (relative to this file); default the SSA names
    [fixed]
    steps = 20000
    [space]
    lr = {log = [1e-3, 1.0]}     # a float range on a log scale ({float = [lo, hi]}: a linear one)
    n_hidden = [100, 200, 300]   # a list of choices
    n_embd = {int = [5, 20]}     # whole numbers ({log_int = [lo, hi]}: on a log scale)

A bad spec is refused with one message that names the file, the line and what a run accepts.
Each trial becomes an ordinary run spec (core.runs.spec) with "hold_test": the test split stays
unseen until `experiment test` (core.experiments.study.evaluate_test).
"""

import math
import os
import re
from dataclasses import dataclass, field

import tomllib

from core.models.presets import DEFAULT_PRESET, TrainConfig, get_preset, train_config
from core.runs.spec import BOOL_KW, MODEL_KW, TRAIN_KW, SpecError, check_spec, count_params

MODELS = ("mlp", "deep", "wavenet", "gpt")  # the lecture models a search is about
SAMPLERS = ("tpe", "grid", "random")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a folder name under the data directory
CHECKPOINTS = 10  # dev loss is estimated this many times per trial (eval_every = steps // 10): the pruner's steps

# what each model's constructor takes (core.models); training settings apply to all of them
MODEL_PARAMS = {
    "mlp": ("n_embd", "n_hidden", "block_size", "batchnorm"),
    "deep": ("n_embd", "n_hidden", "block_size", "n_layer", "gain", "batchnorm", "tanh"),
    "wavenet": ("n_embd", "n_hidden"),
    "gpt": ("n_embd", "n_head", "n_layer", "block_size", "dropout"),
}
TRAIN_PARAMS = ("lr", "lr_decay_step", "lr_final", "batch_size", "steps", "seed")  # searchable
FIXED_ONLY = ("eval_every", "capture_every", "eval_iters", "optimizer")  # settable in [fixed], not searched
TOP_KEYS = ("name", "model", "preset", "trials", "minutes", "sampler", "prune", "seed", "goal", "data",
            "fixed", "space")
RANGES = ("log", "float", "int", "log_int")


class ExperimentError(ValueError):
    """A spec a user got wrong: one line naming the file, the line and the fix."""


@dataclass
class Dim:
    """One hyperparameter's search range: a list of choices, or [lo, hi] (ints or floats, linear or log)."""
    kind: str                      # "choice", "int" or "float"
    values: list = field(default_factory=list)  # choice: the values
    lo: float = 0.0
    hi: float = 0.0
    log: bool = False

    def extremes(self):
        return list(self.values) if self.kind == "choice" else [self.lo, self.hi]

    def to_dict(self):
        return {"choice": list(self.values)} if self.kind == "choice" else \
            {("log_" if self.log and self.kind == "int" else "log" if self.log else "") +
             ("int" if self.kind == "int" else "" if self.log else "float"): [self.lo, self.hi]}


@dataclass
class Experiment:
    name: str
    model: str
    preset: str
    trials: int = 20                # budget: trials asked of the sampler, all states counted
    minutes: float = 0.0            # budget: no new trial after this many minutes (0: none)
    sampler: str = "tpe"
    prune: bool = True
    seed: int = 0                   # the sampler's seed: the same spec asks the same first trials
    goal: float | None = None       # a dev loss to beat, for the page
    data: str | None = None         # an absolute path to a word list, or None for the SSA names
    fixed: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)  # name -> Dim

    def to_dict(self):
        """Plain data, stored with the study (and read back by from_dict)."""
        return dict(name=self.name, model=self.model, preset=self.preset, trials=self.trials, minutes=self.minutes,
                    sampler=self.sampler, prune=self.prune, seed=self.seed, goal=self.goal, data=self.data,
                    fixed=dict(self.fixed), space={k: d.to_dict() for k, d in self.space.items()})

    def run_spec(self, params, trial=None):
        """The run spec (core.runs.spec) of one trial: the preset, [fixed], then the trial's params."""
        values = {**self.fixed, **params}
        model_kw = {k: v for k, v in values.items() if k in MODEL_KW or k in BOOL_KW}
        train = {k: v for k, v in values.items() if k not in model_kw}
        if "eval_every" not in train:  # dev loss at CHECKPOINTS checkpoints: what the pruner judges
            steps = train.get("steps", _preset_steps(self.model, self.preset))
            train["eval_every"] = max(1, steps // CHECKPOINTS)
        spec = dict(model=self.model, preset=self.preset, model_kw=model_kw, train=train, device="cpu",
                    data={"kind": "file", "path": self.data} if self.data else {"kind": "ssa"}, hold_test=True)
        if trial is not None:
            spec["experiment"] = dict(name=self.name, trial=trial)
        return spec


def _preset_steps(model, preset):
    return train_config(get_preset(model, preset)).steps


def from_dict(d):
    """An Experiment from to_dict()'s data (a study's stored spec); trusted, so not checked again."""
    space = {k: _dim(k, v, None) for k, v in d["space"].items()}
    return Experiment(**{**d, "space": space})


# -----------------------------------------------------------------------------
# reading and checking a TOML spec


def load(path, data=None, trials=None):
    """The Experiment in a TOML file, checked. data: a --data path overriding the spec's; trials: --trials."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ExperimentError(f"cannot read the experiment spec {path}: {e.strerror or e}") from None
    text = raw.decode("utf-8", "replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message says "(at line N, column M)"
        raise ExperimentError(f"{path}: not valid TOML: {e}") from None
    return parse(doc, text, source=str(path), base=os.path.dirname(os.path.abspath(path)), data=data, trials=trials)


def parse(doc, text="", source="the spec", base=".", data=None, trials=None):
    """Check a parsed spec (a dict as tomllib returns it); text: its TOML, for line numbers in messages."""

    def fail(table, key, message):
        line = _line_of(text, table, key)
        where = f"{source} line {line}" if line else source
        raise ExperimentError(f"{where}: {message}")

    for k in doc:
        if k not in TOP_KEYS:
            fail("", k, f"unknown setting {k!r}; a spec has {', '.join(TOP_KEYS)}")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        fail("", "name", f"name must be letters, digits, '.', '-' or '_' (at most 64), e.g. \"lr-and-width\" "
                         f"(got {name!r})")
    model = doc.get("model")
    if model not in MODELS:
        fail("", "model", f"unknown model {model!r}; an experiment searches one of {', '.join(MODELS)}")
    preset = doc.get("preset") or DEFAULT_PRESET[model]
    try:
        check_spec(dict(model=model, preset=preset))
    except SpecError as e:
        fail("", "preset", str(e))
    n = doc.get("trials", 20) if trials is None else trials
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
        fail("", "trials", f"trials must be a whole number from 1 to 10,000 (got {n!r})")
    minutes = doc.get("minutes", 0)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes < math.inf:
        fail("", "minutes", f"minutes must be a number >= 0 (0: no time limit; got {minutes!r})")
    sampler = doc.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        fail("", "sampler", f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    prune = doc.get("prune", True)
    if not isinstance(prune, bool):
        fail("", "prune", f"prune must be true or false (got {prune!r})")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        fail("", "seed", f"seed must be a whole number from 0 to 2**32 - 1 (got {seed!r})")
    goal = doc.get("goal")
    if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float)) or goal <= 0):
        fail("", "goal", f"goal must be a dev loss > 0, e.g. 2.10 (got {goal!r})")
    path = data if data is not None else doc.get("data")
    if path is not None:
        if not isinstance(path, str) or not path.strip():
            fail("", "data", f"data must be the path of a word list (got {path!r})")
        # --data is relative to where the command ran; a spec's own data line to the spec's folder
        path = os.path.abspath(path if data is not None else os.path.join(base, path))
        if not os.path.isfile(path):
            if data is not None:
                raise ExperimentError(f"--data {data}: no such file")
            fail("", "data", f"no such file {path}")

    allowed = MODEL_PARAMS[model] + TRAIN_PARAMS
    fixed = doc.get("fixed", {})
    if not isinstance(fixed, dict):
        fail("", "fixed", "fixed must be a table: [fixed] with one setting a line")
    for k, v in fixed.items():
        if k not in allowed + FIXED_ONLY:
            fail("fixed", k, f"unknown setting {k!r} for {model}; [fixed] takes {', '.join(allowed + FIXED_ONLY)}")
    space = doc.get("space", {})
    if not isinstance(space, dict) or not space:
        fail("", "space", "space must be a table with at least one hyperparameter: [space] then e.g. "
                          "lr = {log = [1e-3, 1.0]}")
    dims = {}
    for k, v in space.items():
        if k not in allowed:
            fail("space", k, f"unknown hyperparameter {k!r} for {model}; it searches {', '.join(allowed)}")
        if k in fixed:
            fail("space", k, f"{k} is in both [fixed] and [space]; keep one")
        try:
            dims[k] = _dim(k, v, sampler)
        except ExperimentError as e:
            fail("space", k, str(e))
    exp = Experiment(name=name, model=model, preset=preset, trials=n, minutes=float(minutes), sampler=sampler,
                     prune=prune, seed=seed, goal=None if goal is None else float(goal), data=path, fixed=fixed,
                     space=dims)
    try:  # [fixed] alone, then each end of each range, as a run would be asked to take it
        check_spec(exp.run_spec({}))
    except SpecError as e:
        fail("fixed", next(iter(fixed), "fixed"), str(e))
    for k, d in dims.items():
        for v in d.extremes():
            try:
                check_spec(exp.run_spec({k: v}))
            except SpecError as e:
                fail("space", k, f"{k} = {v!r} is outside what a run accepts: {e}")
    try:  # the largest model the space allows must fit under the parameter cap
        count_params(exp.run_spec({k: d.extremes()[-1] if d.kind != "choice" else max(d.values, key=_size)
                                   for k, d in dims.items()}))
    except SpecError as e:
        fail("space", next(iter(dims)), str(e))
    return exp


def _size(v):
    return v if isinstance(v, (int, float)) else 0


def _integer(name):
    """Whether the run takes whole numbers for this hyperparameter (core.runs.spec's own rule)."""
    if name in TRAIN_KW:
        return isinstance(TrainConfig.__dataclass_fields__[name].default, int)
    return name in MODEL_KW and name not in ("gain", "dropout")


def _dim(name, v, sampler):
    """A space entry as a Dim. sampler None: stored data, already checked."""
    if isinstance(v, dict) and "choice" in v:  # to_dict's form of a list
        v = v["choice"]
    if isinstance(v, list):
        if not v:
            raise ExperimentError(f"{name}: an empty list of choices; give at least one value")
        if len(set(map(repr, v))) != len(v):
            raise ExperimentError(f"{name}: a value is listed twice in {v}")
        kinds = {type(x) for x in v}
        if name in BOOL_KW:
            if kinds != {bool}:
                raise ExperimentError(f"{name} takes true or false (got {v})")
        elif not kinds <= {int, float} or bool in kinds:
            raise ExperimentError(f"{name} takes numbers (got {v})")
        return Dim("choice", values=list(v))
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in RANGES:
        raise ExperimentError(f"{name}: a list of choices, e.g. [100, 200], or a range: {{log = [lo, hi]}}, "
                              f"{{float = [lo, hi]}}, {{int = [lo, hi]}} or {{log_int = [lo, hi]}} (got {v!r})")
    kind, bounds = next(iter(v.items()))
    if sampler == "grid":
        raise ExperimentError(f"{name}: the grid sampler needs a list of values, e.g. [0.01, 0.1], not a range")
    if name in BOOL_KW:
        raise ExperimentError(f"{name} takes true or false: a list, [true, false], not a range")
    if (not isinstance(bounds, list) or len(bounds) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds)):
        raise ExperimentError(f"{name}: a range is two numbers [lo, hi] (got {bounds!r})")
    lo, hi = bounds
    if not lo < hi:
        raise ExperimentError(f"{name}: the range [{lo}, {hi}] is empty; its low end must be below its high end")
    integer = kind in ("int", "log_int")
    if integer and not all(isinstance(b, int) for b in bounds):
        raise ExperimentError(f"{name}: an int range takes whole numbers (got {bounds})")
    if not integer and _integer(name):
        raise ExperimentError(f"{name} takes whole numbers: use {{int = [{int(lo)}, {int(hi)}]}} or a list")
    log = kind in ("log", "log_int")
    if log and lo <= 0:
        raise ExperimentError(f"{name}: a log range must start above 0 (got {lo})")
    return Dim("int" if integer else "float", lo=lo, hi=hi, log=log)


def _line_of(text, table, key):
    """The 1-based line where `key =` sits in [table] ("" for the top), or where [table] opens; None if absent."""
    current, header = "", None
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", s)
        if m:
            current = m.group(1)
            if current == table:
                header = i
                if key == table:
                    return i
            continue
        if current == table and re.match(rf"^\"?{re.escape(key)}\"?\s*=", s):
            return i
    return header
