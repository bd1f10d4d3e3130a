import streamlit as st

st.title("Zero to Hero Lab")
st.caption("Andrej Karpathy's *Neural Networks: Zero to Hero*, trained live: watch activations, "
           "gradients and update ratios while the lecture's models learn.")

st.markdown("""
| Page | What it shows | Lecture (≈ minute in the video) |
|---|---|---|
| **micrograd** | a scalar autograd engine: the computation graph with data and grad on every node, backprop one node at a time, a small MLP learning two moons | 1 · *The spelled-out intro to neural networks and backpropagation* (≈ 0:19 the graph, ≈ 1:09 the neuron, ≈ 2:00 the MLP) |
| **Bigrams** | the 27×27 count matrix with every bigram and its count, smoothing and the NLL, the lecture's samples, one word's loss bigram by bigram, and the neural bigram learning the same probabilities | 2 · *Building makemore* (≈ 0:12 the counts figure, ≈ 0:50 the loss, ≈ 1:02 the neural net) |
| **MLP** | the dataset builder (`... ---> e`), a learning-rate sweep with a suggested rate, training with the step decay, train / dev / test losses, the 2-D embedding of the 27 characters redrawn while it trains, samples | 3 · *Building makemore Part 2: MLP* (≈ 0:09 the dataset, ≈ 0:45 the learning-rate finder, ≈ 0:53 train / dev / test, ≈ 1:05 the embedding, ≈ 1:13 sampling) |
| **Activations & gradients** | a lecture model training live: loss, activation and gradient histograms per layer, grad:data and update:data ratios, the saturation raster, and a diagnosis in plain words with the lecture's fix | 4 · *Building makemore Part 3* (≈ 0:04 the first loss, ≈ 0:12 tanh saturation, ≈ 0:27 Kaiming init, ≈ 0:40 BatchNorm, ≈ 1:26 the diagnostic plots) |
| **Backprop ninja** | the lecture's network (4,137 parameters) with `loss.backward()` taken away: every intermediate from `logprobs` to `emb` with its manual gradient, the formula, and a check against autograd (exact, approximate, max difference); cross-entropy and BatchNorm backward in one line each; a run trained with manual gradients only, its loss overlaid on the autograd run's | 5 · *Building makemore Part 4: Becoming a Backprop Ninja* (its four exercises, in order) |
| **WaveNet** | the lecture's performance log as scenarios (flat context 8, hierarchical, BatchNorm fixed, scaled): each layer's output shape and parameters, the loss averaged over 1,000 steps, val loss, samples, the live diagnostics, and your runs side by side with the lecture's numbers | 6 · *Building makemore Part 5: Building a WaveNet* (≈ 0:17 the layer shapes, ≈ 0:38 FlattenConsecutive, ≈ 0:46 the BatchNorm bug, ≈ 0:55 the log) |
| **GPT** | a character Transformer on names or any running text (tiny Shakespeare): the lecture's steps from bigram to residual blocks with their expected val loss, parameters and time per 1,000 steps before starting, loss estimates, text generated while it trains, and each head's attention map for your prompt | 7 · *Let's build GPT: from scratch, in code, spelled out* (≈ 0:58 self-attention, ≈ 1:21 multi-head, ≈ 1:24 feed-forward, ≈ 1:26 residual blocks and LayerNorm) |
| **Runs** | every run kept on disk: reopen, compare, export, delete | — |
""")

st.markdown("**Start here:** open *Activations & gradients*, keep the scenario **raw** and press **Start**. "
            "Within seconds the diagnosis says the softmax is confidently wrong and the tanh units are "
            "saturated; then switch to **kaiming** and **batchnorm** and watch the panels change.")

st.markdown("""
Every lecture model also trains headless through the same core:

| Lecture | Command |
|---|---|
| 2 · bigrams | `python -m core train --model bigram` |
| 3 · MLP | `python -m core train --model mlp` |
| 4 · activations & BatchNorm | `python -m core train --model mlp --preset raw` |
| 5 · backprop ninja | `python -m core train --model ninja --preset manual` (or `autograd`) |
| 6 · WaveNet | `python -m core train --model wavenet` |
| 7 · GPT | `python -m core train --model gpt` |
""")
st.info("The sidebar's settings (dataset, seed, device) are shared by every page. The dataset is the offline "
        "SSA names unless you upload a file or give a path, such as makemore's `names.txt`.",
        icon=":material/tune:")
