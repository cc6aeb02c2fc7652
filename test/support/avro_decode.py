"""Decodes Confluent-framed Avro values with Apache Avro's own Python reader (logical types on).

Input: a JSON file, a list of {"schema": <writer schema JSON text>, "data": <hex of the Avro body>}.
Output: one JSON line per item, {"ok": true, "value": ...} or {"ok": false, "error": "..."}, with
logical-type values tagged so the caller can see what the reader made of them.
"""
import datetime
import decimal
import io
import json
import sys
import uuid

import avro.io
import avro.schema


def tagged(value):
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and value != value:
        return {"$float": "NaN"}
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return {"$float": str(value)}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return {"$long": str(value)}
    if isinstance(value, dict):
        return {k: tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    return value


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        items = json.load(f)
    schemas = {}
    for item in items:
        text = item["schema"]
        if text not in schemas:
            schemas[text] = avro.io.DatumReader(avro.schema.parse(text))
        try:
            datum = schemas[text].read(avro.io.BinaryDecoder(io.BytesIO(bytes.fromhex(item["data"]))))
            print(json.dumps({"ok": True, "value": tagged(datum)}, allow_nan=False))
        except Exception as e:  # every failure is reported, none stops the others
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))


if __name__ == "__main__":
    main()
