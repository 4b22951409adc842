"""Search a whole archive: an index of every second (FAISS), coarse-to-fine search.

``relocnet index`` (index_job.py, indexer.py, catalog.py, snapshot.py, faiss_index.py) and
``relocnet search`` (search_job.py, archive_search.py, voting.py, report.py); the per-second
descriptors come from the model (descriptors.py).
"""
