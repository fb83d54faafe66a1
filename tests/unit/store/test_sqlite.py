"""The state store's key-value tables count their keys as they change (the metric of a table's
size reads a number, never a scan of millions of rows on the main loop) and give many keys'
values in one query."""

from __future__ import annotations

from consumer.store.sqlite import StateStore


def test_a_table_counts_its_keys_through_puts_updates_deletes_and_a_clear(tmp_path):
    store = StateStore(tmp_path).open()
    kv = store.table("contacts")
    with store.transaction():
        for key in ("a", "b", "c"):
            kv.put(key, b"1")
        kv.put("a", b"2")  # an update: still three keys
        kv.delete("b")
        kv.delete("never-there")
    assert kv.get("a") == b"2"
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    assert kv.count() == 2
    assert statements == []  # answered from memory
    store.db.set_trace_callback(None)
    (rows,) = store.db.execute("SELECT COUNT(*) FROM kv_contacts").fetchone()
    assert rows == 2
    store.close()
    again = StateStore(tmp_path).open()
    reopened = again.table("contacts")
    assert reopened.count() == 2  # counted once when opened
    with again.transaction():
        reopened.clear()
    assert reopened.count() == 0


def test_many_keys_are_got_at_once_past_one_query_s_worth(tmp_path):
    store = StateStore(tmp_path).open()
    kv = store.table("contacts")
    with store.transaction():
        for i in range(0, 1200, 2):  # the even keys exist
            kv.put(f"k{i}", f"v{i}".encode())
    found = kv.get_many([f"k{i}" for i in range(1200)])
    assert found == {f"k{i}": f"v{i}".encode() for i in range(0, 1200, 2)}
