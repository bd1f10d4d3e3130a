import numpy as np
import pandas as pd
import streamlit as st
import torch

from core.models.bigram import count_model, nll_by_smoothing, softmax_rows, word_bigrams
from core.models.presets import MAKEMORE_SEED
from core.training.sampling import sample_bigram
from dashboard import state
from dashboard.plot import charts
from dashboard.ui import live, run_view
from dashboard.ui.registry import dataset_key, words_bigrams, words_dataset
from data import plural

st.title("Bigrams")
st.caption("Lecture 2 · *The spelled-out intro to language modeling: building makemore*. Count which character "
           "follows which, turn the counts into probabilities, sample names, measure the loss -- then get the "
           "same model by gradient descent.")

source = state.get(state.DATA_SOURCE, {"kind": "ssa"})
if source.get("words_error"):
    st.error(source["words_error"].replace("It can still train the GPT, as running text.", "") +
             " The bigram page needs one word per line: pick another dataset in the sidebar.",
             icon=":material/error:")
    st.stop()
try:
    ds = words_dataset(source, block_size=1)
except ValueError as e:  # DataError: the data layer's own words
    st.error(str(e), icon=":material/error:")
    st.stop()
stoi, itos, V = ds.stoi, ds.itos, ds.vocab_size
xs, ys = words_bigrams(source)
st.markdown(f"**{ds.name}**: {plural(len(ds.words), 'word')}, {len(xs):,} bigrams (each word padded with `.` at "
            f"both ends), a vocabulary of {V} characters: `{''.join(itos[i] for i in range(V))}`.")

# --- 1. counting --------------------------------------------------------------------------
st.header("1 · Counting bigrams")
SMOOTHINGS = [0, 0.01, 0.1, 0.5, 1, 2, 5, 10, 100, 1000, 10_000]
c1, c2 = st.columns([3, 1])
with c2:
    smoothing = st.select_slider("Smoothing (added to every count)", SMOOTHINGS, value=1, key="bg_smoothing",
                                 help="The lecture's P = (N+1).float(): fake counts so no bigram has probability "
                                      "0. More smoothing, a smoother -- more uniform -- model.")
    model = count_model(xs, ys, V, smoothing)
    nll = float(model.nll(xs, ys))
    st.metric("Average negative log likelihood", f"{nll:.4f}",
              help="-(1/n) Σ log P[ix1, ix2] over every bigram in the data, summed the lecture's way "
                   "(float32, one bigram at a time): 2.4544 on makemore's names.txt with smoothing 1.")
    st.caption(f"A uniform guess scores −ln(1/{V}) = {np.log(V):.4f}. The lower, the better the model "
               "predicts the data it was counted on.")


@st.cache_data(show_spinner=False, max_entries=4)
def smoothing_curve(key):
    return nll_by_smoothing(xs, ys, V, SMOOTHINGS)


with c2:
    st.plotly_chart(charts.smoothing_figure(SMOOTHINGS, smoothing_curve(dataset_key(source)), smoothing),
                    key="bg_smoothing_chart", width="stretch")
with c1:
    st.plotly_chart(charts.count_heatmap(model.N, model.P, itos), key="bg_counts", width="stretch")

# --- 2. sampling --------------------------------------------------------------------------
st.header("2 · Sampling names")
c1, c2, c3 = st.columns([1, 1, 2])
seed = c1.number_input("Seed", min_value=0, max_value=2**53 - 1, value=MAKEMORE_SEED, step=1, key="bg_seed",
                       help="g = torch.Generator().manual_seed(seed)")
n = c2.number_input("How many", min_value=1, max_value=100, value=5, step=1, key="bg_n")
sampler = c3.radio("Sampler", ["lecture", "torch"], horizontal=True, key="bg_sampler",
                   format_func={"lecture": "as in the video (torch's 2022 multinomial)",
                                "torch": "torch.multinomial today"}.get,
                   help="torch.multinomial draws differently since 2022; the lecture's sampler (inverse CDF "
                        "on one float64 uniform per draw) gives the video's printed names.")
g = torch.Generator().manual_seed(int(seed))
words = ["".join(itos[i] for i in w) + "." for w in sample_bigram(model.P, int(n), g, sampler)]
st.code("\n".join(words), language=None)
st.caption("With seed 2147483647 and smoothing 1 on makemore's names.txt, the lecture's sampler prints "
           "mor. axx. minaymoryles. kondlaisah. anchshizarie. -- terrible names: a bigram only sees one "
           "character back.")

# --- 3. the loss of one word -----------------------------------------------------------------
st.header("3 · How likely is a word?")
# the lecture's andrej where the data has its letters, else the data's own first word; a new dataset
# starts from its own example rather than one it cannot spell
example = "andrej" if set("andrej") <= set(stoi) else ds.words[0]
if state.get("bg_word_data") != dataset_key(source):
    state.take("bg_word")
    state.put("bg_word_data", dataset_key(source))
word = st.text_input("A word", value=example, key="bg_word",
                     help="With smoothing 0, a word with a pair of letters the data never has (andrejq on names: "
                          "'jq' never occurs) has probability 0, and the loss is infinite.")
try:
    rows, total = word_bigrams(model.P, word.lower(), stoi)
except ValueError as e:
    st.error(str(e), icon=":material/error:")
else:
    c1, c2 = st.columns([2, 1])
    c1.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="bg_word_table",
                 column_config={"bigram": st.column_config.TextColumn("bigram"),
                                "prob": st.column_config.NumberColumn("P", format="%.4f"),
                                "logprob": st.column_config.NumberColumn("log P", format="%.4f")})
    c2.metric("log likelihood", f"{total['log_likelihood']:.4f}")
    c2.metric("negative log likelihood", f"{total['nll']:.4f}")
    c2.metric(f"average NLL ({total['n']} bigrams)", f"{total['avg_nll']:.4f}")
    if not np.isfinite(total["nll"]):
        c2.warning("A bigram the model never saw has probability 0: log 0 = −∞, so the loss is infinite. "
                   "Smoothing fixes it.", icon=":material/warning:")

# --- 4. the neural bigram ------------------------------------------------------------------------
st.header("4 · The same model, trained by gradient descent")
st.markdown("`xenc = F.one_hot(xs, num_classes=27).float()`, `logits = xenc @ W`, softmax, and "
            "`loss = -probs[...].log().mean() + 0.01*(W**2).mean()`: full batch, lr 50. The loss comes down to "
            "the count model's, and softmax(W) becomes the count matrix's rows -- the regularizer plays the "
            "smoothing's part.")
c1, c2 = st.columns(2)
steps = c1.number_input("steps", min_value=1, max_value=5_000, value=100, step=10, key="bg_steps")
lr = c2.number_input("learning rate", value=50.0, key="bg_lr", format="%.4g", step=None)
spec = {"model": "bigram-nn", "preset": "default", "model_kw": {}, "page": "bigram",
        "train": {"steps": int(steps), "lr": float(lr), "seed": state.get(state.SEED, MAKEMORE_SEED)},
        "data": source, "device": state.get(state.DEVICE, "cpu")}
run_id = live.run_controls(spec, live.validate(spec))
live.stop_until_started(run_id, "Press **Start**: 100 steps take a few seconds.")

count_nll = float(count_model(xs, ys, V, 1).nll(xs, ys))
row_char = st.selectbox("Row (the character before)", [itos[i] for i in range(V)], index=0, key="bg_row")


def neural(d, o, ticking):
    run_view.header(d)
    left, right = st.columns(2)
    loss = charts.loss_figure([(d.label, d.steps, d.loss, [])], log=False,
                              reference=(count_nll, f"count model, smoothing 1: {count_nll:.4f}"))
    loss["layout"]["legend"] = dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right")
    left.plotly_chart(loss, key="bg_loss", width="stretch")
    ck = live.checkpoint(d.run_id)
    if ck is None:
        right.info("The network's W appears here after its first save (about a second).")
        return
    net, step = ck
    Q = softmax_rows(net.W)
    P1 = count_model(xs, ys, V, 1).P
    right.plotly_chart(charts.prob_rows_figure(P1, Q, itos, stoi[row_char],
                                               labels=("counts (smoothing 1)", f"softmax(W) at step {step}")),
                       key="bg_rows", width="stretch")
    a, b = st.columns(2)
    a.plotly_chart(charts.prob_matrix_figure(P1, itos, "count model: P = (N+1) / row sums"), key="bg_P",
                   width="stretch")
    b.plotly_chart(charts.prob_matrix_figure(Q, itos, f"neural net: softmax(W), step {step}"), key="bg_Q",
                   width="stretch")
    st.caption(f"Largest |P − softmax(W)| over all {V * V} cells: {float((P1 - Q).abs().max()):.4f}; "
               f"last loss {d.loss[-1]:.4f} against the count model's {count_nll:.4f}." if len(d.loss) else "")


live.watch(run_id, neural)
