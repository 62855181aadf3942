"""How index items are dressed for clients."""
from typing import Any, Dict


def with_download_urls(item: Dict[str, Any], s3, expiry_seconds: int) -> Dict[str, Any]:
    """Each product gets a short-lived signed URL, so downloads never pass through the API.

    Signing is a local computation: no request is made to storage here.
    """
    products = []
    for product in item.get("products") or []:
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": product["bucket"], "Key": product["key"]}, ExpiresIn=expiry_seconds)
        products.append({**product, "url": url})
    return {**item, "products": products}
