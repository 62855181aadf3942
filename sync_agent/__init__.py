"""The mountain-side uploader: boto3 and the standard library only, so it installs
anywhere the instrument's data disk is mounted."""
