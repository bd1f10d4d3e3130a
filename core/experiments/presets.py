"""
Lecture 3's hand-tuning story as experiments, one TOML spec per step, each with what the learner should see.
The Experiments page starts from these; `python -m core experiment run` takes the same text from a file.

The lecture tunes by hand on names.txt: it finds the learning rate with the lr finder (0.1: lre between
-1 and -0.5), then makes the net bigger (n_hidden 100 -> 300, n_embd 2 -> 10) and ends at val 2.17 after
200,000 steps. A search does the same in minutes with shorter trials.
"""

from dataclasses import dataclass


@dataclass
class Scenario:
    title: str
    note: str   # what the learner should see
    toml: str


SCENARIOS = {
    "lecture3-lr": Scenario(
        "Lecture 3, step 1: the learning rate",
        "The lecture's lr finder, as a search: TPE homes in on 0.05-0.3 within a dozen trials; rates near 1e-3 "
        "learn too slowly and are pruned, rates near 1 bounce. The lecture settled on 0.1.",
        """name = "lecture3-lr"
model = "mlp"
preset = "lecture3"          # lecture 3's net: n_embd 10, n_hidden 200, plain randn init
trials = 12
sampler = "tpe"
[fixed]
steps = 5000
lr_decay_step = 0            # one rate throughout: the rate is what is judged
[space]
lr = {log = [1e-3, 1.0]}
"""),
    "lecture3-size": Scenario(
        "Lecture 3, step 2: embedding, hidden layer, context",
        "With lr 0.1 then 0.01, a bigger embedding and hidden layer and a little more context pay. On names.txt "
        "the lecture's own sizes (n_embd 10, n_hidden 200, block 3) reach dev 2.146 in 30,000 steps instead of "
        "200,000 (kaiming init, lecture 4's fix: no steps spent undoing a bad start); n_embd 16, n_hidden 300, "
        "block 4 reach 2.075. Too small an n_embd (2, the lecture's first try) is the bottleneck it found.",
        """name = "lecture3-size"
model = "mlp"
preset = "kaiming"
trials = 20
sampler = "tpe"
goal = 2.17                  # the lecture's val after 200,000 steps
[fixed]
steps = 30000
lr = 0.1
lr_decay_step = 20000        # the lecture's drop to 0.01, two thirds of the way
lr_final = 0.01
[space]
n_embd = {int = [2, 24]}
n_hidden = [100, 200, 300]
block_size = [3, 4, 5]
"""),
    "beat-2.10": Scenario(
        "Class exercise: beat val 2.10",
        "The lecture's challenge: every knob at once, the pruner stopping the hopeless trials early. On names.txt "
        "n_embd 16, n_hidden 300, block 4 at lr 0.1 reach dev 2.059 in 40,000 steps: the search should find "
        "its way there or better.",
        """name = "beat-2.10"
model = "mlp"
preset = "kaiming"
trials = 20
sampler = "tpe"
goal = 2.10
[fixed]
steps = 40000
lr_decay_step = 30000
lr_final = 0.01
[space]
lr = {log = [0.03, 0.4]}
n_embd = {int = [8, 24]}
n_hidden = [200, 300]
block_size = [3, 4, 5]
batch_size = [32, 64]
"""),
}
