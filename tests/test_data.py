import gzip
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
    with pytest.raises(DataError, match=r"too few for a 90/10 split with block_size 8 \(need 81"):
        TextDataset("abcdefghij", block_size=8)


@pytest.mark.parametrize("block_size", [1, 8, 256])
def test_text_of_exactly_the_needed_length_splits_and_one_less_does_not(block_size):
    n = data.chars_needed(block_size)
    ds = TextDataset("ab" * n, block_size)  # twice as long: fine
    assert len(TextDataset(("ab" * n)[:n], block_size).val_data) == block_size + 1
    with pytest.raises(DataError, match=f"need {n:,}"):
        TextDataset(("ab" * n)[:n - 1], block_size)
    x, y = ds.get_batch("val", 2)
    assert x.shape == (2, block_size)


# --- tiny word lists: the 80/10/10 split needs a word in each part -----------------------------

@pytest.mark.parametrize("n_words", [1, 2, 4, 5])
@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_too_few_words_for_the_split_says_how_many_are_needed(n_words, block_size):
    ds = WordsDataset(["emma", "olivia", "ava", "isabella", "sophia"][:n_words], block_size, name="tiny.txt")
    with pytest.raises(DataError) as e:
        ds.check_split()
    assert str(e.value).startswith(f"tiny.txt has {n_words} word{'s' if n_words > 1 else ''}: too few words for "
                                   "an 80/10/10 split (need 6)")


@pytest.mark.parametrize("n_words", [6, 7, 9, 10, 11, 50])
def test_six_words_and_more_give_every_split_a_word(n_words):
    assert data.MIN_SPLIT_WORDS == 6
    ds = WordsDataset([f"w{'x' * i}" for i in range(n_words)], 8).check_split()
    assert min(len(ds.Ytr), len(ds.Ydev), len(ds.Yte)) >= 1


def test_plural_counts():
    assert [data.plural(n, "line") for n in (0, 1, 2, 1000)] == ["0 lines", "1 line", "2 lines", "1,000 lines"]
    assert data.plural(1, "word") == "1 word" and data.plural(3, "child", "children") == "3 children"
    assert WordsDataset(["emma"], 3, name="one.txt").describe().startswith("one.txt: 1 word, max length 4")


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


# --- encodings: a byte-order mark says how to read the file ------------------------------------

WORDS = ["emma", "olivia", "zoë", "renée"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig", "utf-32"])
def test_a_file_with_a_byte_order_mark_decodes(tmp_path, encoding):
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")  # python's -le/-be omit it
    raw = bom + "\r\n".join(WORDS).encode(encoding)
    assert data.load_words(write(tmp_path, "w.txt", raw)) == WORDS
    assert data.words_from_upload(raw, "w.txt") == WORDS
    assert data.load_text(write(tmp_path, "t.txt", raw)).startswith("emma\r\nolivia")


def test_utf16_without_a_byte_order_mark_is_named_not_called_binary(tmp_path):
    with pytest.raises(DataError, match="UTF-16 without a byte-order mark"):
        data.load_words(write(tmp_path, "w.txt", "emma\nolivia\n".encode("utf-16-le")))


def test_a_real_binary_file_is_still_refused_as_binary(tmp_path):
    with pytest.raises(DataError, match="binary"):
        data.load_words(write(tmp_path, "names.txt.gz", gzip.compress(b"emma\nolivia\n" * 100, mtime=0)))
    rng = random.Random(0)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    for bom in (b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf"):  # a BOM-like start does not make noise text
        with pytest.raises(DataError, match="binary|not UTF-(8|16)"):
            data.load_words(write(tmp_path, "noise.bin", bom + noise))


def test_a_byte_order_mark_alone_is_empty(tmp_path):
    with pytest.raises(DataError, match="empty"):
        data.load_words(write(tmp_path, "bom.txt", b"\xff\xfe"))


# --- a file that grows: the limit holds while reading, not only in the size check ---------------

def test_a_file_reporting_size_0_is_cut_off_at_the_limit_while_read(monkeypatch):
    # /proc files say st_size 0 and then have content, as a file still being written can
    monkeypatch.setattr(data.loading, "MAX_FILE_BYTES", 100)
    with pytest.raises(DataError, match="goes on past the limit"):
        data.read_text("/proc/self/maps")
