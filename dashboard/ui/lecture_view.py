"""
What the WaveNet and GPT pages add to the shared run view: the size and speed of
a model before it starts, lecture 6's layer table and windowed loss, lecture 7's
loss estimates, generated text and attention maps, and a results table of the
runs made so far next to the lectures' own numbers.
"""

import json
import os

import pandas as pd
import streamlit as st
import torch

from core.models.inspector import attention_maps, layer_shapes
from core.models.presets import PRESETS
from core.runs.spec import count_params, fresh_model, seconds_per_1000_steps
from dashboard.plot import charts
from dashboard.ui import interventions, live
from dashboard.ui.registry import manager, read_path
from data import plural

# -----------------------------------------------------------------------------
# before a run: the dataset's vocabulary, the model's size and speed, its layer table


def vocab_size(spec):
    """The vocabulary the run will have: 27 for names (26 letters and '.' or a newline), else counted."""
    src = spec.get("data") or {}
    if src.get("kind") != "file":
        return 27
    path = src["path"]
    text = read_path(path, os.path.getmtime(path))
    if spec["model"] == "gpt":
        return len(set(text))
    return len(set("".join(w.strip() for w in text.splitlines())) | {"."})


@st.cache_data(show_spinner="Timing a few training steps...", max_entries=32)
def _seconds_per_1000(spec_json, vocab):
    return seconds_per_1000_steps(json.loads(spec_json), vocab)


def about(s):
    """A measured duration in words: a small model's 1,000 steps can take a third of a second."""
    if s < 1:
        return "under a second"
    return "about " + (f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400
                       else f"{s / 3600:.1f} h")


def controls(model):
    """A lecture page's controls: the scenario and its hyperparameters, the model's size and speed, then
    Start / Pause / Step / Stop / Reset. Returns (spec, errors, run_id)."""
    spec, errors = live.scenario_controls(models=(model,))
    size_and_speed(spec, errors)
    return spec, errors, live.run_controls(spec, errors)


def size_and_speed(spec, errors):
    """The parameter count and the time per 1,000 steps (measured here, one thread), before Start."""
    if errors:
        return
    V = vocab_size(spec)
    spec = {k: v for k, v in spec.items() if not k.startswith("_")}
    try:
        n = count_params(spec, V)  # on the meta device: free even for the lecture's 10.8M model
        per_1000 = _seconds_per_1000(json.dumps(spec, sort_keys=True), V)
    except (ValueError, RuntimeError) as e:  # SpecError, DataError, a shape torch refuses
        st.error(f"This model cannot be built: {e}", icon=":material/error:")
        return
    steps = spec["train"].get("steps") or 0
    st.caption(f"**{n:,} parameters** (vocabulary {V}) · **{about(per_1000)} per 1,000 steps** on one core "
               f"here (timed just now on random batches, loss estimates included), so "
               f"{about(per_1000 * steps / 1000)} for {plural(steps, 'step')}. The diagnostics add a little.")


def layer_table(spec, run_id, errors):
    """Lecture 6's `for layer in model.layers: print(layer.__class__.__name__, ':', tuple(layer.out.shape))`."""
    ck = live.checkpoint(run_id) if run_id else None
    if ck is not None:
        model, step = ck
        source = f"the run's model at step {step:,}"
    elif errors:
        return
    else:
        try:
            model, _ = fresh_model({k: v for k, v in spec.items() if not k.startswith("_")}, vocab_size(spec))
        except (ValueError, RuntimeError):  # size_and_speed above already said why
            return
        source = "a fresh model of these settings"
    B, T = 32, model.get_block_size()
    rows = layer_shapes(model, torch.zeros((B, T), dtype=torch.long))
    with st.expander(f"Layer by layer: output shapes for a batch of {B} (the lecture's table)", expanded=True):
        st.caption(f"{source}; input ({B}, {T}) character indices. Parameters per layer; total "
                   f"{sum(n for *_, n in rows):,}.")
        st.code("\n".join(f"{name:<22}: {str(shape):<16} {n:>8,} params" for name, shape, n in rows),
                language=None)


# -----------------------------------------------------------------------------
# during a run


def window_loss(run_id):
    """Lecture 6's loss plot, redrawn with the run."""

    def draw(d, o, ticking):
        if len(d.loss) < 1000:
            st.info(f"The lecture averages the loss over windows of 1,000 steps: the first point appears at "
                    f"step 1,000 (now {len(d.loss):,}).", icon=":material/hourglass:")
        else:
            st.plotly_chart(charts.window_loss_figure([(d.label, d.steps, d.loss, d.evals())],
                                                      markers=interventions.markers(d.meta)),
                            key="window_loss_chart", width="stretch")
        st.markdown("**Your runs next to the lecture's log**")
        results_table("wavenet")

    live.watch(run_id, draw)


def gpt_progress(run_id, preset):
    """Train/val estimates next to the lecture's val, and the text generated at each estimate."""

    def draw(d, o, ticking):
        left, right = st.columns([2, 3])
        with left:
            if d.evals():
                st.plotly_chart(charts.eval_figure(d.evals(), preset.expected.get("val"), d.label,
                                                   markers=interventions.markers(d.meta)),
                                key="eval_chart", width="stretch")
            else:
                exp = preset.expected.get("val")
                st.caption(f"Train and val loss are estimated every {plural(d.meta.get('eval_every') or 500, 'step')} "
                           f"(the mean of eval_iters batches)" +
                           (f"; the lecture reached val ≈ {exp:g} with this step." if exp else "."))
        with right:
            _generated(d.meta.get("generated") or [], ticking)
        st.markdown("**Your runs next to the lecture's steps**")
        results_table("gpt")

    live.watch(run_id, draw)


def _generated(generated, ticking):
    if not generated:
        st.caption("Generated text appears when the worker has built the model.")
        return
    latest = generated[-1]
    st.markdown(f"**Generated at step {latest['step']:,}** (300 characters from the same seed every "
                f"time, so only the model changes)")
    st.code(latest["text"], language=None, height=230, wrap_lines=True)
    if len(generated) > 1 and not ticking:
        with st.expander("Every sample so far"):
            for g in reversed(generated[:-1]):
                st.caption(f"step {g['step']:,}")
                st.code(g["text"], language=None, height=120, wrap_lines=True)


def _default_prompt(chars, block_size):
    for p in ("First Citizen:\nBefore we proceed", "\nemma\nolivia\nava\n"):
        if set(p) <= set(chars):
            return p[:block_size]
    return "".join(chars[1:block_size + 1])


def attention(run_id):
    """Every head's attention for a typed prompt, on the run's latest saved model (redrawn as it trains)."""
    live.watch(run_id, lambda d, o, ticking: _attention(run_id, d.meta))


def _attention(run_id, meta):
    chars, block_size = meta.get("chars"), meta.get("block_size")
    ck = live.checkpoint(run_id)
    if not chars or not block_size or ck is None:
        st.info("The worker saves its model every 2 s: the maps appear with the first save.",
                icon=":material/hourglass:")
        return
    model, step = ck
    if not getattr(model, "blocks", None):
        st.info("This model has no self-attention (the bigram step): every character predicts the next on "
                "its own. Pick **one-head** or later to see attention.", icon=":material/info:")
        return
    show = min(block_size, 48)
    c1, c2 = st.columns([3, 1])
    prompt = c1.text_area("Prompt (Enter for a new line)", value=_default_prompt(chars, show),
                          key=f"att_prompt_{run_id}", height=80,
                          help=f"The model sees at most block_size = {plural(block_size, 'character')}; the maps show "
                               f"the last {min(show, block_size)}.")
    n_layer = len(model.blocks)
    layer = c2.segmented_control("Block", list(range(n_layer)), default=0, key=f"att_layer_{run_id}",
                                 format_func=lambda i: f"block {i}") if n_layer > 1 else 0
    unknown = sorted(set(prompt) - set(chars))
    if not prompt:
        st.info("Type a prompt to see where each character looks.", icon=":material/keyboard:")
        return
    if unknown:
        st.error(f"The prompt has characters this run's vocabulary does not know: "
                 f"{', '.join(repr(c) for c in unknown)}. Its {plural(len(chars), 'character')}: "
                 f"{''.join(charts._char_label(c) for c in chars)}", icon=":material/error:")
        return
    prompt = prompt[-show:]
    stoi = {c: i for i, c in enumerate(chars)}
    att = attention_maps(model, torch.tensor([[stoi[c] for c in prompt]]))
    b = min(layer or 0, att.shape[0] - 1)
    st.plotly_chart(charts.attention_figure(att[b].numpy(), prompt,
                                            f"attention in block {b} at step {step:,}: row = a position, "
                                            f"columns = what it reads (each row sums to 1)"),
                    key="attention_chart", width="stretch")
    st.caption("Grey cells are the causal mask: a character never reads the future. Early in training "
               "every row is spread evenly over the past; as the model learns, heads pick what to read.")


# -----------------------------------------------------------------------------
# after runs: the performance log


def results_table(model):
    """Every run of this model on this server, next to the lecture's numbers for its preset."""
    runs = [r for r in manager().db.list_runs() if r["spec"].get("model") == model]
    if not runs:
        return
    rows = []
    for r in reversed(runs):  # oldest first, as the lecture's log grows
        spec, meta = r["spec"], r["meta"]
        exp = PRESETS[model].get(spec.get("preset"), None)
        exp = exp.expected if exp else {}
        final = meta.get("final") or {}
        last = (manager().db.evals(r["id"]) or [(None, None, None)])[-1]
        rows.append({"run": r["id"], "scenario": spec.get("preset"), "state": r["state"],
                     "data": (spec.get("data") or {}).get("name", "SSA names"), "step": r["step"],
                     "params": meta.get("params"),
                     "train": final.get("train", last[1]), "val": final.get("val", last[2]),
                     "lecture params": exp.get("params"), "lecture train": exp.get("train"),
                     "lecture val": exp.get("val")})
    df = pd.DataFrame(rows)
    df["val − lecture"] = df["val"].astype(float) - df["lecture val"].astype(float)
    num = {c: st.column_config.NumberColumn(format="%.4f") for c in ("train", "val", "lecture train",
                                                                     "lecture val", "val − lecture")}
    num.update({c: st.column_config.NumberColumn(format="localized") for c in ("step", "params", "lecture params")})
    st.dataframe(df, hide_index=True, width="stretch", column_config=num, key=f"results_{model}")
    st.caption("train / val: the final numbers of a finished run (eval mode), else its latest estimate. The "
               "lecture's numbers are on makemore's names.txt (WaveNet) and tiny Shakespeare (GPT): choose the "
               "same file in the sidebar to compare like with like.")
    return df


def _loss(v):
    return f"{v:.4f}".rstrip("0").rstrip(".")  # the lecture's digits: 2.28 stays 2.28, 1.99365150 becomes 1.9937


def lecture_log(model, presets, heading):
    """The lecture's own log, before any run, and the runs made so far next to it."""
    cols = [c for c in ("params", "train", "val") if any(c in PRESETS[model][n].expected for n in presets)]
    fmt = {"params": "{:,}".format, "train": _loss, "val": _loss}
    rows = ["| scenario | " + " | ".join(cols) + " | what to see |", "|---|" + "---:|" * len(cols) + "---|"]
    for n in presets:
        p = PRESETS[model][n]
        cells = [fmt[c](p.expected[c]) if c in p.expected else "" for c in cols]
        rows.append(f"| **{n}** | " + " | ".join(cells) + f" | {p.note} |")
    st.markdown(heading)
    st.markdown("\n".join(rows))
    results_table(model)
