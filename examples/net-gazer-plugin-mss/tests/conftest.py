"""net-gazer's test helpers (a real FalkorDB, a real collector, real replays) as fixtures."""

pytest_plugins = ["net_gazer.testing"]
