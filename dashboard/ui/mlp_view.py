"""
The pieces of the MLP page (lecture 3) that are more than a line: the dataset
builder, the model's shapes, the learning-rate finder, the split losses and the
2-D embedding. Each draws one section; the page calls them in lecture order.
"""

import numpy as np
import pandas as pd
import streamlit as st

import data
from core.models.presets import get_preset
from core.training.lr_finder import describe, smooth_loss, suggest_lr
from dashboard import state
from dashboard.plot import charts
from dashboard.ui import live
from dashboard.ui.registry import words_dataset

LECTURE3_PRESETS = ["lecture3-2d", "lecture3"]
FINDER_SLOT = "lrf"       # the lr finder's run: ?lrf= in the URL, beside the training run's ?run=
SWEEP = [-3, 0]           # lre = torch.linspace(-3, 0, 1000)
SWEEP_STEPS = 1000


# -----------------------------------------------------------------------------
# 1. the dataset: contexts -> targets


def dataset_builder():
    """A typed word through data.build_dataset, printed as the lecture prints it."""
    source = state.get(state.DATA_SOURCE, {"kind": "ssa"})
    try:
        words = words_dataset(source, block_size=1).words  # the sidebar's words, one cache for every page
    except data.DataError as e:
        st.error(f"The sidebar's dataset is not a list of words: {e}", icon=":material/error:")
        return
    vocab = data.Vocab("".join(words) + ".")
    c1, c2 = st.columns([2, 1])
    word = c1.text_input("A word", value="emma", max_chars=data.MAX_WORD_LEN, key="ds_word",
                         help="Any word made of the dataset's characters.")
    block_size = c2.number_input("block_size", min_value=1, max_value=10, value=3, step=1, key="ds_block",
                                 help="How many characters of context predict the next one.")
    try:
        X, Y = data.word_examples(word.strip(), int(block_size), vocab)
    except data.DataError as e:
        chars = " ".join(vocab.itos[i] for i in range(vocab.vocab_size))
        st.error(f"{e} Its characters: {chars}" if "vocabulary" in str(e) else str(e), icon=":material/error:")
        return
    left, right = st.columns([1, 1.4])
    left.code("\n".join(f"{vocab.decode(x)} ---> {vocab.itos[int(y)]}" for x, y in zip(X, Y)), language=None)
    right.dataframe(pd.DataFrame({"context": [vocab.decode(x) for x in X], "X (ints)": [str(x.tolist()) for x in X],
                                  "Y": Y.tolist(), "target": [vocab.itos[int(y)] for y in Y]}),
                    hide_index=True, width="stretch")
    tr, dev, te = data.split_words(words)
    n = [sum(len(w) + 1 for w in split) for split in (tr, dev, te)]
    st.caption(f"`{word.strip()}` gives {len(Y)} examples: one per character plus the closing `.`. Over all "
               f"{data.plural(len(words), 'word')} of the sidebar's dataset (shuffled with seed 42, split 80/10/10), "
               f"`Xtr` is {n[0]:,} × {block_size}, `Xdev` {n[1]:,} × {block_size}, `Xte` {n[2]:,} × {block_size}; "
               f"`Y` holds the next character of each row. Vocabulary: {vocab.vocab_size} characters, `.` = 0.")


# -----------------------------------------------------------------------------
# 2. the model


def model_summary(spec, errors):
    """The lecture's tensors with this scenario's sizes, and its forward pass."""
    if errors:
        return
    kw = spec["model_kw"]
    n_embd, n_hidden, block = kw["n_embd"], kw["n_hidden"], get_preset("mlp", spec["preset"]).block_size
    B = spec["train"]["batch_size"]
    fan_in = block * n_embd
    lines = [
        (f"C  = torch.randn((27, {n_embd}), generator=g)", "the embedding: one row per character"),
        (f"W1 = torch.randn(({fan_in}, {n_hidden}), generator=g)", f"block_size * n_embd = {block} * {n_embd} inputs"),
        (f"b1 = torch.randn({n_hidden}, generator=g)", ""),
        (f"W2 = torch.randn(({n_hidden}, 27), generator=g)", ""),
        ("b2 = torch.randn(27, generator=g)", f"{spec.get('_params', 0):,} parameters in all"),
        ("", ""),
        ("emb = C[Xb]", f"({B}, {block}, {n_embd})"),
        (f"h = torch.tanh(emb.view(-1, {fan_in}) @ W1 + b1)", f"({B}, {n_hidden})"),
        ("logits = h @ W2 + b2", f"({B}, 27)"),
        ("loss = F.cross_entropy(logits, Yb)", ""),
    ]
    width = max(len(code) for code, _ in lines) + 3
    st.code("\n".join(f"{code:<{width}}# {note}" if note else code for code, note in lines), language="python")


# -----------------------------------------------------------------------------
# 3. the learning-rate finder: a real run through the worker, in its own slot


def finder_spec(spec):
    """The training spec made into the lecture's sweep: 1,000 steps, lr = 10**lre, no decay."""
    train = dict(spec["train"], steps=SWEEP_STEPS, lre_sweep=SWEEP, lr_decay_step=0, capture_every=0,
                 eval_every=0)
    return {k: v for k, v in spec.items() if not k.startswith("_")} | {"train": train}


def lr_finder(spec, errors):
    fspec = finder_spec(spec)
    ferrors = live.validate(fspec) if not errors else errors
    run_id = live.current_run(FINDER_SLOT)
    c1, c2 = st.columns([1, 3])
    c1.button("Sweep the learning rate", on_click=live.start_in_slot, args=(fspec, FINDER_SLOT),
              disabled=bool(ferrors), icon=":material/search:", key="btn_lr_sweep", width="stretch")
    c2.caption(f"{SWEEP_STEPS:,} steps of this model, one minibatch of {spec['train']['batch_size']} each, at "
               "`lr = lrs[i]` with `lre = torch.linspace(-3, 0, 1000); lrs = 10**lre`: from 0.001 to 1. "
               "Too small and the loss barely moves; too large and it blows up.")
    if run_id is None:
        return

    def sweep(f, o, ticking):
        if f.state in ("failed", "stopped") and f.meta.get("message"):
            st.error(f.meta["message"])
        lri = np.log10(np.maximum(f.lr, 1e-30)) if len(f.lr) else f.lr
        sug = suggest_lr(lri, f.loss) if f.state in ("finished", "diverged") else None
        smoothed = smooth_loss(f.loss) if len(f.loss) else None
        st.plotly_chart(charts.lr_finder_figure(lri, f.loss, smoothed, sug), key="lr_finder_chart", width="stretch")
        if f.live:
            st.caption(f"sweeping: step {len(f.steps):,} of {SWEEP_STEPS:,}")
        elif f.state in ("finished", "diverged"):
            st.markdown(describe(sug))
            if sug is not None:
                model = spec["model"]
                st.button(f"Train at lr = {sug[1]:.2g}", key="btn_use_lr", icon=":material/check:",
                          on_click=use_lr, args=(model, float(f"{sug[1]:.2g}")))

    live.watch(run_id, sweep)


def use_lr(model, lr):
    """Set the learning-rate field to the sweep's suggestion. The button sits in the sweep's fragment, whose
    rerun would leave the field (outside it) showing its old value, and the browser would send that old value
    back with the next click: a full rerun redraws the field, and Start's spec, with the new one."""
    live.set_number("lr", model, lr)
    st.rerun()


# -----------------------------------------------------------------------------
# 4. after (and while) training: split losses, the embedding


def split_losses(d):
    """The lecture's final numbers: the loss on each whole split, in eval mode; dev losses along the way."""
    final = d.meta.get("final") or {}
    evals = d.evals()
    if not final and not evals:
        return
    if final:
        cols = st.columns(3)
        for col, (split, label) in zip(cols, (("train", "train"), ("val", "dev"), ("test", "test"))):
            v = final.get(split)
            col.metric(f"{label} loss (whole split)", "—" if v is None else f"{v:.4f}")
        st.caption("The lecture reports train and dev; the test split is looked at once, at the very end. "
                   "With lecture3 on names.txt: about 2.13 train and 2.17 dev (plain randn init, before "
                   "lecture 4's fixes).")
    if evals:
        with st.expander(f"Whole-split losses during training ({data.plural(len(evals), 'evaluation')})",
                         expanded=False):
            st.dataframe(pd.DataFrame(evals, columns=["step", "train", "dev"]), hide_index=True, width="stretch")


def embedding(d, spec):
    """C as 27 points in the plane, redrawn from the worker's checkpoint (every ~2 s) while training."""
    n_embd = (d.row or {}).get("spec", {}).get("model_kw", {}).get("n_embd", spec["model_kw"].get("n_embd"))
    if n_embd != 2:
        st.info(f"The embedding picture needs n_embd = 2 (scenario **lecture3-2d**); this run's C is 27 × {n_embd}.",
                icon=":material/scatter_plot:")
        return

    def scatter(r, o, ticking):
        ck = live.checkpoint(r.run_id)
        if ck is None:
            st.info("The embedding appears with the worker's first save of the model (within ~2 s of starting).")
            return
        model, step = ck
        chars = r.meta.get("chars") or [chr(96 + i) if i else "." for i in range(model.C.shape[0])]
        st.plotly_chart(charts.embedding_figure(model.C.detach().numpy(), chars, step), key="embedding_chart",
                        width="stretch")

    left, right = st.columns([3, 2])
    with left:
        live.watch(d.run_id, scatter)
    right.markdown("`plt.scatter(C[:,0].data, C[:,1].data)`, one dot per row of `C`, as the lecture draws it.")
    right.caption("At step 0 the points are random. As the net trains, characters that play the same role move "
                  "together: the vowels a e i o u gather, `.` (the start and end of a name) sits apart, and "
                  "rare letters such as q drift off on their own. The picture is redrawn from the model the "
                  "worker saves every ~2 s.")
