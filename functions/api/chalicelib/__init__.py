"""The light library shared by the API and the ingest function.

It lives here because `chalice package` ships only an app's own folder and its
`chalicelib/`; the ingest function imports it as `functions.api.chalicelib`, so the
index schema and the settings exist once. Nothing here may import numpy or astropy:
the API package must stay small.
"""
