import math

import streamlit as st

from core.models.ninja import BN_STEP, CE_STEP, CMP_ORDER
from core.models.presets import MAKEMORE_SEED
from dashboard import state
from dashboard.ui import ninja_view as nv
from data import DataError

st.title("Backprop ninja")
st.caption("Lecture 5 · *Building makemore Part 4: Becoming a Backprop Ninja*. The lecture's network with "
           "`loss.backward()` taken away: every gradient written out by hand, tensor by tensor, and checked "
           "against autograd -- then the whole backward pass in a few lines, and training with it.")

# --- the network and one minibatch (the sidebar picks the data and the seed) ---------------
source, seed = state.data_source(), state.get(state.SEED, MAKEMORE_SEED)
if source.get("words_error"):
    st.error(source["words_error"] + " This page needs one word per line, like makemore's names.txt.",
             icon=":material/error:")
    st.stop()
try:
    ds, ex = nv.exercises(source, seed)
except DataError as e:
    st.error(str(e), icon=":material/error:")
    st.stop()

st.markdown(
    f"**The network** (n_embd 10, n_hidden 64): `C` {tuple(ex.net.C.shape)}, `W1`, `b1`, BatchNorm (`bngain`, "
    f"`bnbias`), tanh, `W2`, `b2` -- **{ex.net.num_params():,} parameters**, drawn from "
    f"`g = torch.Generator().manual_seed({seed})` in that order, then one minibatch of 32 from `g`. "
    f"Its loss is **{ex.loss:.4f}** (a blank model's would be ln {ds.vocab_size} = "
    f"{math.log(ds.vocab_size):.4f}).  \n**Data:** {ds.describe()}.")
if source.get("kind") == "ssa":
    st.caption("The lecture trained on makemore's names.txt: in the sidebar choose *A file on this machine* and "
               "give its path to see the lecture's split (182,625 / 22,655 / 22,866 examples) and numbers.")

ex1, ex2, ex3, ex4 = st.tabs(["① Every tensor by hand", "② Cross-entropy in one line",
                              "③ BatchNorm in one line", "④ Train with manual gradients"])

# =========================================================================================
# exercise 1: the forward pass in small steps, and backward through every one of them
with ex1:
    st.markdown("The forward pass is cut into steps small enough to differentiate one at a time "
                "(`logit_maxes`, `counts_sum_inv`, `bnvar_inv`, ...). Walk it backwards, from `logprobs` to `C`: "
                "each `d`-tensor has the shape of its tensor, and is compared with the `.grad` autograd left there.")
    url_tensor = state.url_get("tensor", "logprobs")
    name = st.selectbox("Tensor (in the lecture's order, from the loss back to the embeddings)", CMP_ORDER,
                        index=CMP_ORDER.index(url_tensor) if url_tensor in CMP_ORDER else 0, key=nv.NJ_TENSOR,
                        format_func=lambda n: f"d{n}")
    state.url_set(tensor=name)
    nv.tensor_detail(ex, name)

    st.subheader("Every tensor against autograd")
    st.markdown("The lecture's `cmp(s, dt, t)` for all of them: **exact** is `torch.all(dt == t.grad)`, "
                "**approximate** is `torch.allclose(dt, t.grad)`.")
    nv.check_table(ex)
    st.info("**Honest about the last bits.** From `logprobs` down to `b2` every manual gradient is bit-for-bit "
            "autograd's. From `hpreact` down they agree to about 1e-9, not bit-for-bit: PyTorch's own tanh backward "
            "rounds `(1 - h**2) * dh` a little differently (with `torch.ops.aten.tanh_backward` in that one line, "
            "`dbngain`, `dbnbias` and `dbnraw` become exact too), and every gradient below inherits those last bits. "
            "`dlogit_maxes` and `db1` are about zero: the max is subtracted only for numerical safety, and BatchNorm "
            "removes whatever `b1` adds.", icon=":material/info:")

# =========================================================================================
# exercise 2: cross-entropy's backward in closed form
with ex2:
    nv.closed_form(CE_STEP, "Written out on paper, the eight lines from `dlogprobs` to `dlogits` collapse into one "
                   "formula. The forward is one call:", ex.ce_check, "logits",
                   ("loss_fast", f"{ex.loss_fast:.6f}",
                    f"the chunked forward's loss: {ex.loss:.6f} (difference {abs(ex.loss_fast - ex.loss):.1e})"))
    st.caption(CE_STEP.why + f" Here the largest row sum is {ex.dlogits.sum(1).abs().max().item():.1e}.")
    st.plotly_chart(nv.grad_figure_of("logits", ex.dlogits, ex.t["logits"].grad,
                                      "dlogits: the correct character of each row is the dark blue pull"),
                    key="nj_ce_chart", width="stretch")

# =========================================================================================
# exercise 3: BatchNorm's backward in closed form
with ex3:
    nv.closed_form(BN_STEP, "The same for BatchNorm: from `dhpreact` to `dhprebn` through `bnraw`, `bnvar_inv`, "
                   "`bnvar`, `bndiff2`, `bndiff` and `bnmeani` in one expression. The forward in one line:",
                   ex.bn_check, "hprebn",
                   ("hpreact_fast vs hpreact", f"{ex.hpreact_fast_diff:.1e}", "max |difference| of the forwards"))
    st.caption(BN_STEP.why)
    st.plotly_chart(nv.grad_figure_of("hprebn", ex.dhprebn, ex.t["hprebn"].grad), key="nj_bn_chart",
                    width="stretch")

# =========================================================================================
# exercise 4: train with the manual backward only, next to autograd
with ex4:
    st.markdown("Put the two closed forms together and `loss.backward()` is not needed any more: the **manual** "
                "run trains under `torch.no_grad()` and fills every `p.grad` by hand. The **autograd** run is the same "
                "network, seed, batches and updates with `loss.backward()`. Both train at once, each in its own "
                "process; the lecture ran 200,000 steps (lr 0.1, then 0.01 from step 100,000).")
    with st.expander("The manual backward the run uses (`Ninja.manual_backward` in core/models/ninja.py)"):
        st.code(nv.MANUAL_BACKWARD_SOURCE, language="python")
    ids = nv.train_controls(seed)
    if ids is None:
        st.info("Press **Train both**: within seconds the two loss curves lie on top of each other, and the "
                "gap between them stays at float-rounding size.", icon=":material/school:")
    else:
        nv.training_panel(ids, math.log(ds.vocab_size))
