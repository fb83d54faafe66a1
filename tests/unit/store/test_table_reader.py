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


def test_prefetched_keys_are_got_from_memory_as_they_were(tmp_path):
    store, table = _table(tmp_path)
    with store.transaction():
        table.apply(b"c-1", orjson.dumps({"name": "Ana"}))
        table.apply(b"c-2", orjson.dumps({"name": "Bo"}))
    table.prefetch(["c-1", "c-2", "c-3", "c-1"])
    store.db.execute("DROP TABLE kv_contacts")  # any query would now fail
    assert [table.get(k) for k in ("c-1", "c-2", "c-3")] == ["Ana", "Bo", None]


def test_a_prefetched_key_changed_by_its_topic_is_got_as_changed(tmp_path):
    store, table = _table(tmp_path)
    with store.transaction():
        table.apply(b"c-1", orjson.dumps({"name": "Ana"}))
    table.prefetch(["c-1", "c-2"])
    with store.transaction():
        table.apply(b"c-1", orjson.dumps({"name": "Ana B"}))
        table.apply(b"c-2", orjson.dumps({"name": "Cy"}))
    assert [table.get("c-1"), table.get("c-2")] == ["Ana B", "Cy"]


def test_keys_beyond_the_cache_are_left_to_get_never_taken_for_absent(tmp_path):
    store, table = _table(tmp_path)  # a cache of 10
    names = {f"c-{i}": f"name {i}" for i in range(25)}
    with store.transaction():
        for key, name in names.items():
            table.apply(key.encode(), orjson.dumps({"name": name}))
    table.prefetch(names)
    assert {k: table.get(k) for k in names} == names
