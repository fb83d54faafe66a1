import orjson

from consumer.store.sqlite import StateStore
from consumer.store.table_reader import Table


def _table(tmp_path):
    store = StateStore(tmp_path).open()
    table = Table("contacts", "t", orjson.loads, lambda d: d["name"], cache_size=10)
    table.attach(store)
    table.kv.create()
    return store, table


def test_a_key_known_absent_is_found_once_it_arrives(tmp_path):
    store, table = _table(tmp_path)
    assert table.get("c-1") is None
    assert table.get("c-1") is None  # from memory now
    with store.transaction():
        table.apply(b"c-1", orjson.dumps({"name": "Ana"}))
    assert table.get("c-1") == "Ana"
    with store.transaction():
        table.apply(b"c-1", None)  # tombstone
    assert table.get("c-1") is None


def test_an_absent_key_costs_no_query_the_second_time(tmp_path):
    store, table = _table(tmp_path)
    assert table.get("c-2") is None
    store.db.execute("DROP TABLE kv_contacts")  # any query would now fail
    assert table.get("c-2") is None
