"""The gateway's side of stored responses: expired rows are deleted through the stats flush
(hourly, from the wall clock of the last request), and a stored response waits for no batch."""

from __future__ import annotations

import importlib
import os
import random

from uniapi_core.config import load_config
from uniapi_core.gateway import EXPIRE_EVERY, Gateway, Settings
from uniapi_core.ops.responses_store import RESPONSES, load_work, loaded, save_work
from uniapi_core.ops.stats import StoreConfig, StoreSession

CONFIG = """
providers:
  - {provider: oa, base_url: "http://u/v1/chat/completions", api: k1, model: [m]}
api_keys:
  - {api: sk-user}
"""


def test_expired_responses_are_deleted_hourly_and_saves_go_first(tmp_path):
    store = StoreConfig.from_env({"DB_PATH": str(tmp_path / "stats.db")})
    gw = Gateway(load_config(CONFIG).config, settings=Settings(stats_store=store),
                 entropy=random.Random(0))
    session = StoreSession(store, importlib.import_module, os.makedirs)
    assert gw.stats is not None
    start = gw.stats_start(1000.0)
    gw.stats_done(start, session.run(start), 0.0)
    assert gw.stats_next(0.0, False) is None  # no request yet: no wall clock to expire by
    for rid, created in (("resp_old", 1000.0), ("resp_new", 5000.0)):
        work = save_work(gw.stats.dialect, response_id=rid, client_key="k-1", created=created,
                         ttl=100.0, model="m", status="completed", input_items=[],
                         output_items=[], response={"id": rid}, previous_id=None)
        assert gw.stats.add_work(work)
        assert gw.stats.due(0.0)  # at once, not after the batch interval
        taken = gw.stats_next(0.0, False)
        gw.stats_done(taken, session.run(taken), 0.0)
    gw.handle("GET", "/healthz", (), b"", now=10.0, wall=5050.0)  # the wall clock is known
    expire = gw.stats_next(20.0, False)  # wall 5060: resp_old expired at 1100
    assert expire is not None and any(f"DELETE FROM {RESPONSES}" in st.sql
                                      for st in expire.statements)
    gw.stats_done(expire, session.run(expire), 20.0)
    assert gw.stats_next(30.0, False) is None  # not again within the hour
    for rid, found in (("resp_old", False), ("resp_new", True)):
        rows = session.run(load_work(gw.stats.dialect, rid, "k-1", 0.0))
        assert (loaded(rows) is not None) is found, rid
    later = gw.stats_next(20.0 + EXPIRE_EVERY, False)
    assert later is not None and any("DELETE" in st.sql for st in later.statements)
