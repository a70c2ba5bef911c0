"""Reports of recorded runs without Kibana: `locust-sink report`, `compare` and `runs`.

Sources: a file-mode results folder (`files.py`) or a run in Elasticsearch (`es.py`), both turned into one
`RunFigures` (`model.py`) by `collect.py`; renderers: `html.py` (Bokeh, one offline file), `text.py`,
`RunFigures.as_dict()` for JSON; `compare.py` and `rules.py` for deltas and pass/fail verdicts; `runs.py`
lists runs. Importing this package imports neither Locust nor Bokeh (only `html.py` and `charts.py` do).
"""
