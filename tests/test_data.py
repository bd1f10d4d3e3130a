import random

import pytest
import torch

import data
from data import DataError, TextDataset, Vocab, WordsDataset, bigrams, build_dataset

# --- the lectures' pipeline on makemore's names.txt ------------------------------------

def test_names_txt_has_makemores_32033_words(names_words):
    assert len(names_words) == 32033
    assert names_words[:3] == ["emma", "olivia", "ava"]


def test_vocab_dot_is_zero_then_sorted_letters(names_words):
    v = Vocab("".join(names_words) + ".")
    assert v.vocab_size == 27
    assert v.stoi["."] == 0 and v.stoi["a"] == 1 and v.stoi["z"] == 26
    assert v.itos[0] == "." and v.decode(v.encode("emma")) == "emma"


def test_encode_unknown_character_names_it():
    with pytest.raises(DataError, match="'Z'"):
        Vocab("abc.").encode("aZ")


def test_split_sizes_match_the_lecture_block3_and_block8(names_words):
    for block_size in (3, 8):
        ds = WordsDataset(names_words, block_size)
        assert (len(ds.Ytr), len(ds.Ydev), len(ds.Yte)) == (182625, 22655, 22866)
        assert ds.Xtr.shape == (182625, block_size)


def test_split_is_random_seed_42_shuffle_without_touching_global_random(names_words):
    random.seed(123)
    before = random.random()
    random.seed(123)
    tr, dev, te = data.split_words(names_words)
    assert random.random() == before  # the global random is untouched
    words = list(names_words)
    random.seed(42)
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    assert (tr, dev, te) == (words[:n1], words[n1:n2], words[n2:])


def test_build_dataset_is_the_lectures_sliding_context():
    stoi = Vocab("emma.").stoi
    X, Y = build_dataset(["emma"], 3, stoi)
    e, m, a = stoi["e"], stoi["m"], stoi["a"]
    assert X.tolist() == [[0, 0, 0], [0, 0, e], [0, e, m], [e, m, m], [m, m, a]]
    assert Y.tolist() == [e, m, m, a, 0]


def test_bigrams_count_is_228146(names_words):
    xs, ys = bigrams(names_words, Vocab("".join(names_words) + ".").stoi)
    assert len(xs) == len(ys) == 228146


@pytest.mark.parametrize("block_size", [0, -1, 2.5, None])
def test_block_size_below_one_is_refused(block_size):
    with pytest.raises(DataError, match="block_size"):
        WordsDataset(["abc"], block_size)
    with pytest.raises(DataError, match="block_size"):
        TextDataset("hello world, hello again", block_size)


# --- the offline default ------------------------------------------------------------------

def test_default_words_are_ssa_names_most_common_first():
    words = data.default_words()
    assert 25_000 < len(words) < 35_000
    assert len(set(words)) == len(words)
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    assert words[:2] == ["emma", "liam"]  # 2017, both sexes summed
    assert WordsDataset(words, 3).vocab_size == 27


# --- running text -----------------------------------------------------------------------

def test_tiny_shakespeare_numbers(shakespeare_path):
    ds = TextDataset(data.load_text(shakespeare_path), block_size=8)
    assert ds.vocab_size == 65
    assert (len(ds.train_data), len(ds.val_data)) == (1003854, 111540)
    assert ds.itos[0] == "\n"


def test_get_batch_targets_are_inputs_shifted_by_one(shakespeare_path):
    ds = TextDataset(data.load_text(shakespeare_path), block_size=8)
    g = torch.Generator().manual_seed(1337)
    x, y = ds.get_batch("train", 4, generator=g)
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_text_too_short_for_block_size_is_refused():
    with pytest.raises(DataError, match="too short"):
        TextDataset("abcdefghij", block_size=8)


# --- bad input: one exception type, a message to show as is --------------------------------

def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="No such file"):
        data.load_words(tmp_path / "nope.txt")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="folder"):
        data.load_words(tmp_path)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        data.load_words(write(tmp_path, "e.txt", b""))


def test_only_blank_lines(tmp_path):
    with pytest.raises(DataError, match="blank lines"):
        data.load_words(write(tmp_path, "b.txt", "\n  \n\t\n"))
    with pytest.raises(DataError, match="blank lines"):
        data.load_text(write(tmp_path, "b2.txt", "\n \n"))


def test_binary_file_with_nul_bytes(tmp_path):
    with pytest.raises(DataError, match="binary"):
        data.load_words(write(tmp_path, "x.bin", bytes(range(256)) * 4))


def test_non_utf8_file(tmp_path):
    with pytest.raises(DataError, match="not UTF-8"):
        data.load_words(write(tmp_path, "latin1.txt", "jos\xe9\nren\xe9e\n".encode("latin-1")))


def test_file_over_the_size_cap_is_refused_before_reading(tmp_path, monkeypatch):
    p = write(tmp_path, "big.txt", "abc\n" * 1000)
    monkeypatch.setattr(data.loading, "MAX_FILE_BYTES", 1000)
    with pytest.raises(DataError, match="limit"):
        data.load_words(p)
    with pytest.raises(DataError, match="limit"):
        data.words_from_upload(b"abc\n" * 1000)


def test_vocabulary_too_large_for_a_character_model(tmp_path):
    text = "\n".join(chr(0x4E00 + i) for i in range(400))  # 400 distinct CJK characters
    with pytest.raises(DataError, match="distinct characters"):
        data.load_words(write(tmp_path, "cjk.txt", text))
    with pytest.raises(DataError, match="distinct characters"):
        data.load_text(write(tmp_path, "cjk2.txt", text))


def test_word_longer_than_the_cap_names_its_line(tmp_path):
    with pytest.raises(DataError, match="line 2"):
        data.load_words(write(tmp_path, "long.txt", "anna\n" + "x" * 500 + "\n"))


def test_word_with_the_reserved_dot(tmp_path):
    with pytest.raises(DataError, match="'.'"):
        data.load_words(write(tmp_path, "dots.txt", "a.b\n"))


def test_utf8_bom_and_crlf_and_blank_lines_are_tolerated(tmp_path):
    p = write(tmp_path, "ok.txt", "\ufeffanna\r\n\r\nbob\r\n")
    assert data.load_words(p) == ["anna", "bob"]


def test_upload_bytes_go_through_the_same_checks():
    assert data.words_from_upload(b"emma\nolivia\n") == ["emma", "olivia"]
    with pytest.raises(DataError):
        data.words_from_upload(b"")
    with pytest.raises(DataError):
        data.text_from_upload(b"\x00\x01")


def test_data_error_is_a_value_error_with_a_plain_message(tmp_path):
    try:
        data.load_words(tmp_path / "missing.txt")
    except ValueError as e:
        assert isinstance(e, DataError)
        assert "\n" not in str(e) and "Traceback" not in str(e)
