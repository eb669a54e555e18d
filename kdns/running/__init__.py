"""kdns.app.App in pieces, one concern each, stacked so each piece may use those below it:

wiring.py     the parts App holds and how they are wired from a Config (resolver, responder's
              optional parts, TCP, killer mode, background tasks)
sources.py    where cluster objects come from (demo, manifests, API watch, none); readiness
datafiles.py  zone files, the hosts file, block lists and views: polled and swapped in
reloading.py  reload whole or refused whole; restart-only settings; the config hash
serving.py    start, signals, --workers, lameduck and stop

kdns.app.App (Serving) builds the parts from a Config; kdns.app.run runs it.
"""
