"""Clinician review: a web app over run directories, the annotation database, the live recorder.

Only `live` (imported by the runner) and `annotation` (records) need nothing beyond the core
install; the server and the database need the `review` extra (`pip install 'clinicgym[review]'`).
"""
