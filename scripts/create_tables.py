#!/usr/bin/env python3
"""Create the DynamoDB tables declared in template.yaml on a DynamoDB endpoint (DynamoDB Local).

template.yaml is the one source of truth for table definitions: this script reads every
AWS::DynamoDB::Table resource from it and creates it under the physical name given on the
command line (LogicalId=physical-name), so local tables cannot drift from the deployed ones.

Usage:
    create_tables.py --endpoint http://127.0.0.1:8000 RateLimitTable=rate-limits ClientsTable=clients
    [--template template.yaml] [--region us-east-1]

Idempotent: an existing table is left as it is, except that a TTL the template declares is
switched on if it is off. Needs boto3 and pyyaml (scripts/tools.sh installs both into .tools/venv).
"""
import argparse
import pathlib
import sys
import time

import boto3
import yaml
from botocore.exceptions import ClientError, WaiterError


class _CfnLoader(yaml.SafeLoader):
    """Loads CloudFormation YAML, keeping intrinsic functions (!Ref, !Sub, ...) as plain values."""


def _intrinsic(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(template_path):
    """The template as plain data; intrinsic functions become their arguments."""
    return yaml.load(pathlib.Path(template_path).read_text(), Loader=_CfnLoader)


def table_definitions(template_path):
    template = load_template(template_path)
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


# Table properties DynamoDB Local understands; the rest (PITR, SSE, tags, deletion protection)
# only matters on AWS.
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection")


def _indexes(props, key, on_demand):
    indexes = []
    for index in props.get(key, []):
        spec = {k: index[k] for k in _INDEX_KEYS if k in index}
        if not on_demand and "ProvisionedThroughput" in index:
            spec["ProvisionedThroughput"] = index["ProvisionedThroughput"]
        indexes.append(spec)
    return indexes


def create(client, name, props):
    """Create table `name` from template properties; returns False when it already existed."""
    billing = props.get("BillingMode", "PROVISIONED" if "ProvisionedThroughput" in props else "PAY_PER_REQUEST")
    on_demand = billing == "PAY_PER_REQUEST"
    request = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }
    if not on_demand:
        request["ProvisionedThroughput"] = props["ProvisionedThroughput"]
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = _indexes(props, key, on_demand)
    if props.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}

    try:
        client.create_table(**request)
        created = True
    except client.exceptions.ResourceInUseException:  # exists (or is being created by a peer)
        created = False
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})

    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    return created


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint", required=True, help="DynamoDB endpoint URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--template", default=str(pathlib.Path(__file__).resolve().parent.parent / "template.yaml"))
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("tables", nargs="+", metavar="LogicalId=name")
    args = parser.parse_args()

    definitions = table_definitions(args.template)
    client = boto3.client(
        "dynamodb",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_tables()
            break
        except Exception as exc:  # endpoint still starting
            if time.monotonic() > deadline:
                sys.exit(f"DynamoDB at {args.endpoint} did not answer within 30 s: {exc}")
            time.sleep(0.2)

    for pair in args.tables:
        logical_id, _, name = pair.partition("=")
        if logical_id not in definitions or not name:
            sys.exit(f"unknown table {logical_id!r}: template.yaml declares {sorted(definitions)}")
        try:
            created = create(client, name, definitions[logical_id])
        except (ClientError, WaiterError) as exc:
            sys.exit(f"cannot create {logical_id} as {name!r}: {exc}")
        print(f"{'created' if created else 'exists '} {logical_id} as {name}")


if __name__ == "__main__":
    main()
