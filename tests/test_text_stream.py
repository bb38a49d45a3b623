"""TextStream: one sequence's text, ended by its first stop string, against brute force.

The expectations are computed on the whole text at once; the stream sees it in
pieces (or in tokens that split characters), and must return the same output
whatever the split.
"""

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigc_sdk import TextStream

ALPHABET = "ab é日🐍\n"


def expected(text: str, stops: tuple[str, ...], keep_stop: bool) -> tuple[str, str | None]:
    """(output, stop that ended it) by brute force over every end position."""
    for end in range(len(text) + 1):
        ending = [s for s in stops if s and text[:end].endswith(s)]
        if ending:
            stop = max(ending, key=len)
            return (text[:end] if keep_stop else text[: end - len(stop)]), stop
    return text, None


def could_begin_a_stop(tail: str, stops: tuple[str, ...]) -> bool:
    return any(s.startswith(tail) and s != tail for s in stops)


class BytesDecoder:
    """A byte-level detokenizer: each token is some bytes, maybe part of a character."""

    def __init__(self, vocab: list[bytes]) -> None:
        self.vocab = vocab
        self.utf8 = codecs.getincrementaldecoder("utf-8")()

    def push(self, token: int) -> str:
        return self.utf8.decode(self.vocab[token])

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


def split(data, cuts: list[int]):
    """``data`` cut at the positions ``cuts`` (any order, repeats give empty pieces)."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


texts = st.text(alphabet=ALPHABET, max_size=40)
stop_lists = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), max_size=3)
cut_lists = st.lists(st.integers(min_value=0, max_value=200), max_size=12)


@settings(max_examples=400, deadline=None)
@given(text=texts, stops=stop_lists, cuts=cut_lists, keep_stop=st.booleans())
def test_pieces_join_to_the_brute_force_output(text, stops, cuts, keep_stop):
    stream = TextStream(stops, keep_stop=keep_stop)
    out, added = [], ""
    for piece in split(text, cuts):
        added += piece
        out.append(stream.add(piece))
        if not stream.done:
            # All that was added is returned, but for a tail that could begin a stop
            # string: none of it is held back needlessly.
            assert added.startswith(stream.text) and stream.text == "".join(out)
            tail = added[len(stream.text) :]
            assert not tail or (not keep_stop and could_begin_a_stop(tail, tuple(stops)))
    out.append(stream.finish())
    output, stop = expected(text, tuple(stops), keep_stop)
    assert "".join(out) == stream.text == output
    assert stream.stop == stop and stream.done
    assert stream.finish() == "" and stream.add("more") == ""


@settings(max_examples=300, deadline=None)
@given(text=texts, stops=stop_lists, cuts=cut_lists, keep_stop=st.booleans())
def test_tokens_that_split_characters(text, stops, cuts, keep_stop):
    # Tokens are arbitrary byte runs: a stop string and a character may each span several.
    vocab = split(text.encode(), cuts)
    stream = TextStream(stops, decoder=BytesDecoder(vocab), keep_stop=keep_stop)
    out = [stream.push(token) for token in range(len(vocab))]
    out.append(stream.finish())
    assert not any("\ufffd" in piece for piece in out)
    assert "".join(out) == expected(text, tuple(stops), keep_stop)[0]


def test_what_cannot_begin_a_stop_is_returned_at_once():
    stream = TextStream(["</s>"], keep_stop=False)
    assert stream.add("Hello <") == "Hello "  # "<" could begin "</s>"
    assert stream.add("b") == "<b"  # "<b" cannot
    assert stream.add("> </") == "> "
    assert stream.add("s>tail") == ""
    assert stream.done and stream.stop == "</s>" and stream.text == "Hello <b> "
    assert stream.finish() == ""


def test_kept_stop_ends_the_text_and_nothing_is_held():
    stream = TextStream(["\n\n"])
    assert stream.add("one\n") == "one\n"
    assert stream.add("\ntwo") == "\n"
    assert stream.done and stream.stop == "\n\n" and stream.text == "one\n\n"


def test_the_earliest_ending_stop_wins_and_the_longest_ending_there_is_left_out():
    assert TextStream(["bcd", "c"]).add("abcd") == "abc"
    stream = TextStream(["b", "ab"], keep_stop=False)
    assert stream.add("xab") == "x" and stream.stop == "ab"


def test_finish_releases_a_held_tail_and_flushes_the_decoder():
    stream = TextStream(["end"], keep_stop=False)
    assert stream.add("the en") == "the "
    assert stream.finish() == "en" and stream.stop is None
    # An unfinished character at the end comes out as U+FFFD, as bytes.decode(errors=...) does.
    stream = TextStream(decoder=BytesDecoder(["é".encode()[:1]]))
    decoder = stream.decoder
    decoder.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    assert stream.push(0) == "" and stream.finish() == "\ufffd"


def test_without_stops_every_piece_passes():
    stream = TextStream(keep_stop=False)
    assert [stream.add(p) for p in ["a", "", "b"]] == ["a", "", "b"]
    assert stream.finish() == "" and stream.text == "ab"


def test_push_needs_a_decoder():
    with pytest.raises(AttributeError):
        TextStream().push(1)
