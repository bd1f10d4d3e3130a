"""
Looking inside models: lecture 6's layer table, lecture 7's attention maps and steps,
generated text, the time estimate, and a short GPT run on tiny Shakespeare.
"""

import math

import pytest
import torch

from core.models.build import build_model
from core.models.inspector import attention_maps, generate_text, layer_shapes, time_per_1000_steps
from core.models.presets import get_preset, train_config
from core.runs.spec import build_job, seconds_per_1000_steps
from core.training.loop import Run


def wavenet(preset):
    model, _ = build_model(get_preset("wavenet", preset), 27, 42)
    return model


def gpt(preset, vocab_size=65):
    model, _ = build_model(get_preset("gpt", preset), vocab_size, 1337)
    return model


# --- lecture 6: the layer table -----------------------------------------------------------------

def test_hierarchical_wavenet_layer_table_is_the_lectures():
    rows = layer_shapes(wavenet("hierarchical"), torch.zeros((32, 8), dtype=torch.long))
    assert rows == [
        ("Embedding", (32, 8, 10), 270),
        ("FlattenConsecutive", (32, 4, 20), 0),
        ("Linear", (32, 4, 68), 20 * 68),
        ("BatchNorm1d", (32, 4, 68), 136),
        ("Tanh", (32, 4, 68), 0),
        ("FlattenConsecutive", (32, 2, 136), 0),
        ("Linear", (32, 2, 68), 136 * 68),
        ("BatchNorm1d", (32, 2, 68), 136),
        ("Tanh", (32, 2, 68), 0),
        ("FlattenConsecutive", (32, 136), 0),   # the last pair: T = 1 squeezed away
        ("Linear", (32, 68), 136 * 68),
        ("BatchNorm1d", (32, 68), 136),
        ("Tanh", (32, 68), 0),
        ("Linear", (32, 27), 68 * 27 + 27),
    ]
    assert sum(n for _, _, n in rows) == 22_397


def test_flat_wavenet_table_flattens_all_eight_characters_at_once():
    rows = layer_shapes(wavenet("flat8"), torch.zeros((4, 8), dtype=torch.long))
    assert rows[:3] == [("Embedding", (4, 8, 10), 270), ("FlattenConsecutive", (4, 80), 0),
                        ("Linear", (4, 200), 16_000)]
    assert sum(n for _, _, n in rows) == 22_097


def test_the_layer_table_leaves_batchnorm_running_stats_and_mode_alone():
    model = wavenet("scaled")
    bn = next(layer for name, layer in model.named_layers() if "BatchNorm" in name)
    before = bn.running_mean.clone()
    layer_shapes(model, torch.randint(0, 27, (32, 8)))
    assert torch.equal(bn.running_mean, before) and model.training


def test_gpt_layer_table_names_each_block():
    rows = layer_shapes(gpt("blocks"), torch.zeros((32, 8), dtype=torch.long))
    names = [r[0] for r in rows]
    assert names == ["token_embedding_table Embedding", "position_embedding_table Embedding",
                     "blocks.0 Block", "blocks.1 Block", "blocks.2 Block", "ln_f LayerNorm", "lm_head Linear"]
    assert rows[0][1] == (32, 8, 32) and rows[1][1] == (8, 32) and rows[-1][1] == (32, 8, 65)
    assert sum(n for _, _, n in rows) == 42_369


# --- lecture 7: the steps -------------------------------------------------------------------------

@pytest.mark.parametrize("preset,params", [("bigram", 4_481), ("one-head", 7_553), ("four-heads", 7_553),
                                           ("ffwd", 8_609), ("blocks", 42_369)])
def test_the_lectures_steps_have_the_expected_sizes(preset, params):
    # by hand: embeddings 65*32 + 8*32, lm_head 32*65 + 65; one head of 32 or four of 8: 3*32*32;
    # ffwd 32*32 + 32; a residual Block 3*32*32 + 32*32+32 + 32*128+128 + 128*32+32 + 4*32
    model = gpt(preset)
    assert model.num_params() == params
    cfg = train_config(get_preset("gpt", preset))
    assert (cfg.batch_size, cfg.steps, cfg.lr, cfg.optimizer, cfg.eval_every, cfg.eval_iters, cfg.seed) == \
        (32, 5000, 1e-3, "adamw", 500, 200, 1337)
    assert model.get_block_size() == 8


def test_before_the_residual_step_there_is_no_projection_and_no_layernorm():
    model = gpt("ffwd")
    block = model.blocks[0]
    assert block.sa.proj is None and not hasattr(block, "ln1")
    assert [type(m).__name__ for m in block.ffwd.net] == ["Linear", "ReLU"]
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())


@pytest.mark.parametrize("preset", ["one-head", "four-heads", "ffwd", "blocks"])
def test_every_step_is_causal(preset):
    model = gpt(preset).eval()
    x = torch.randint(0, 65, (1, 8), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, 5:] = (x2[0, 5:] + 1) % 65
    torch.testing.assert_close(model(x)[0][0, :5], model(x2)[0][0, :5])


# --- attention maps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("preset,shape", [("one-head", (1, 1)), ("four-heads", (1, 4)), ("blocks", (3, 4))])
def test_attention_rows_sum_to_one_and_respect_the_causal_mask(preset, shape):
    model = gpt(preset)
    idx = torch.randint(0, 65, (1, 7), generator=torch.Generator().manual_seed(1))
    att = attention_maps(model, idx)
    assert att.shape == (*shape, 7, 7)
    torch.testing.assert_close(att.sum(-1), torch.ones(*shape, 7))
    future = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    assert (att[..., future] == 0).all()              # nobody reads from the future
    assert (att[..., ~future] > 0).all()              # softmax gives every past position some weight
    assert (att[..., 0, 0] == 1).all()                # the first character can only read itself


def test_attention_maps_change_nothing_and_crop_to_block_size():
    model = gpt("blocks")
    idx = torch.randint(0, 65, (1, 20), generator=torch.Generator().manual_seed(2))
    model.eval()
    before = model(idx[:, -8:])[0]
    model.train()
    att = attention_maps(model, idx)
    assert att.shape == (3, 4, 8, 8) and model.training
    assert all(h.att is None and not h.keep_att for b in model.blocks for h in b.sa.heads)
    model.eval()
    assert torch.equal(model(idx[:, -8:])[0], before)


def test_the_bigram_step_has_no_attention_to_map():
    assert attention_maps(gpt("bigram"), torch.zeros((1, 5), dtype=torch.long)) is None


# --- generated text and the time estimate -----------------------------------------------------------

def test_generated_text_is_repeatable_and_leaves_the_global_rng_alone():
    model = gpt("blocks")
    torch.manual_seed(7)
    state = torch.get_rng_state()
    a = generate_text(model, 50, seed=1)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert a == generate_text(model, 50, seed=1) and len(a) == 50 and all(0 <= i < 65 for i in a)
    assert a != generate_text(model, 50, seed=2)


def test_time_per_1000_steps_is_a_positive_measurement():
    spec = {"model": "gpt", "preset": "four-heads", "model_kw": {}, "train": {}}
    torch.manual_seed(3)
    state = torch.get_rng_state()
    s = seconds_per_1000_steps(spec, 65, budget=0.3)
    assert torch.equal(torch.get_rng_state(), state)
    assert 0 < s < 600 and math.isfinite(s)
    # a model ~5x bigger in width takes longer per step
    big = time_per_1000_steps(gpt("blocks"), 32, 8, 65, train_config(get_preset("gpt", "blocks")), budget=0.3)
    assert big > s * 0.5


def test_time_estimate_works_for_the_lecture_layers_too():
    spec = {"model": "wavenet", "preset": "bnfix", "model_kw": {}, "train": {}}
    assert 0 < seconds_per_1000_steps(spec, 27, budget=0.2) < 600


# --- a short GPT run on tiny Shakespeare ---------------------------------------------------------------

@pytest.mark.long
def test_a_short_gpt_run_on_tiny_shakespeare_beats_the_bigram_baseline(shakespeare_path):
    spec = {"model": "gpt", "preset": "blocks", "model_kw": {},
            "train": {"steps": 1500, "eval_every": 0, "eval_iters": 100, "capture_every": 0},
            "data": {"kind": "file", "path": str(shakespeare_path)}}
    model, batches, cfg, probe, info, ds = build_job(spec)
    assert info["vocab_size"] == 65 and abs(info["expected_init_loss"] - 4.174) < 1e-3
    run = Run(model, batches, cfg, probe=probe)
    run.run(chunk=500)
    # the oracle: the count bigram (+1 smoothing) fitted on the train split, scored on all of val --
    # the best any model that looks only at the current character can do
    V, tr, va = ds.vocab_size, ds.train_data, ds.val_data
    N = torch.ones((V, V)).index_put_((tr[:-1], tr[1:]), torch.ones(len(tr) - 1), accumulate=True)
    bigram_val = -(N / N.sum(1, keepdim=True))[va[:-1], va[1:]].log().mean().item()
    assert 2.4 < bigram_val < 2.6
    assert run.state == "finished" and run.final["val"] < bigram_val - 0.05, (run.final, bigram_val)
