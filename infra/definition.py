"""The stack definition (infra/stack.json) and what each consumer derives from it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

STACK_FILE = Path(__file__).with_name("stack.json")


def load(path: Path = STACK_FILE) -> Dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)


def table_create_kwargs(definition: Dict[str, Any]) -> Dict[str, Any]:
    """boto3 create_table arguments for the index table (on-demand billing)."""
    table = definition["index_table"]
    return {
        "TableName": table["name"],
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in table["attributes"].items()],
        "KeySchema": [{"AttributeName": table["hash_key"], "KeyType": "HASH"},
                      {"AttributeName": table["range_key"], "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {"IndexName": ix["name"],
             "KeySchema": [{"AttributeName": ix["hash_key"], "KeyType": "HASH"},
                           {"AttributeName": ix["range_key"], "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "ALL"}}
            for ix in table["indexes"]
        ],
    }


def environment(definition: Dict[str, Any]) -> Dict[str, str]:
    """The functions' environment variables (the same names SAM sets in AWS)."""
    return {
        "RAW_BUCKET": definition["raw_bucket"]["name"],
        "RAW_PREFIX": definition["raw_bucket"]["prefix"],
        "PRODUCTS_BUCKET": definition["products_bucket"]["name"],
        "INDEX_TABLE": definition["index_table"]["name"],
        "MAX_RECEIVE_COUNT": str(definition["ingest_queue"]["max_receive_count"]),
    }


def user_pool_kwargs(definition: Dict[str, Any]) -> Dict[str, Any]:
    """boto3 create_user_pool arguments: accounts made by operators only (no sign-up)."""
    pool = definition["user_pool"]
    return {"PoolName": pool["name"],
            "Policies": {"PasswordPolicy": {"MinimumLength": pool["password_min_length"], "RequireUppercase": False,
                                            "RequireLowercase": True, "RequireNumbers": True,
                                            "RequireSymbols": False}},
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True}}


def user_pool_client_kwargs(definition: Dict[str, Any]) -> Dict[str, Any]:
    """The page's app client: public (no secret: it runs in the browser), password
    sign-in and refresh tokens."""
    pool = definition["user_pool"]
    return {"ClientName": pool["client_name"], "GenerateSecret": False,
            "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            "AccessTokenValidity": pool["access_token_minutes"], "IdTokenValidity": pool["access_token_minutes"],
            "RefreshTokenValidity": pool["refresh_token_days"],
            "TokenValidityUnits": {"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"},
            "PreventUserExistenceErrors": "ENABLED"}


def raw_bucket_lifecycle(definition: Dict[str, Any]) -> Dict[str, Any]:
    """The raw bucket's lifecycle (boto3's LifecycleConfiguration): multipart uploads
    nobody completed are aborted after a day, so their parts are not kept and billed."""
    days = definition["raw_bucket"]["abort_incomplete_multipart_days"]
    return {"Rules": [{"ID": "abort-incomplete-multipart-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days}}]}
