"""The data layer the workers and the API share: the settings (settings.py, the one
place the environment is read), the DynamoDB index (index.py), the declaration of
its file item (item.py), who may see what (access.py), the versions of a reduction
(versions.py), the line fits observers keep (linefits.py) and the declaration of the
reduction settings (parameters.py); and the measurements the API makes on products
without numpy: a FITS reader (fitsread.py), line fitting (linefit.py) and imexam
(imexam.py) on a small least-squares core (lsq.py), with JSON-safe floats (jsonfloat.py).

It is a top-level package: the workers import it from the repository root (their
CodeUri), and the Chalice app gets it through `functions/api/vendor/golive_data`, a
symlink that `chalice package` follows and copies to the top of the API's deployment
package (infra/local/server.py puts the vendor folder on sys.path as `chalice local`
does). Only the standard library and boto3 here: no numpy or astropy, so the API
stays light (tests/test_data_layer.py).
"""
