"""Message ids: 26 characters of Crockford base32, ordered by their millisecond, unique."""

from sendq.message import is_message_id, new_message_id


def test_ids_have_the_documented_form_and_order() -> None:
    ids = [new_message_id(ms) for ms in (1, 2, 1_700_000_000_000, 2**48 - 1)]
    assert all(is_message_id(i) for i in ids)
    assert ids == sorted(ids)


def test_ids_of_one_millisecond_are_unique() -> None:
    """80 random bits each: many thousands in one ms never repeat."""
    ids = {new_message_id(5) for _ in range(25_000)}
    assert len(ids) == 25_000
    assert len({i[10:] for i in ids}) == 25_000  # the random part differs, not only the time
