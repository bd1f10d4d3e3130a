import streamlit as st

st.title("Zero to Hero Lab")
st.caption("Andrej Karpathy's *Neural Networks: Zero to Hero*, trained live: watch activations, "
           "gradients and update ratios while the lecture's models learn.")

st.markdown("""
| Lecture | What you will see here | Headless today |
|---|---|---|
| 1 · micrograd | a scalar autograd engine, its computation graph, backprop step by step | |
| 2 · makemore: bigrams | the 27×27 count matrix, sampling, the neural bigram | `python -m core train --model bigram` |
| 3 · makemore: MLP | the Bengio MLP, learning-rate finder, embeddings | `python -m core train --model mlp` |
| 4 · activations & BatchNorm | live histograms of activations, gradients, update:data ratios, diagnosis | `python -m core train --model mlp --preset raw` |
| 5 · backprop ninja | every intermediate gradient by hand, checked against autograd | |
| 6 · WaveNet | the hierarchical model and its layer shapes | `python -m core train --model wavenet` |
| 7 · GPT | a character Transformer, attention maps | `python -m core train --model gpt` |
""")
st.info("The headless CLI runs every lecture model now: `python -m core train --help`. "
        "Live pages arrive lecture by lecture.", icon=":material/terminal:")
