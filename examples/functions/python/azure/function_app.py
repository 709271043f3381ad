"""Azure Functions (Python v2 programming model): `bulkhead_shim.azure` imported first after
azure.functions, `@bulkhead.governed` under `@app.route`; the wrapper delivers the deny records before
the worker answers the host."""

from __future__ import annotations

import json

import azure.functions as func

from bulkhead_shim import azure as bulkhead  # first import after azure.functions

# isort: split
from checkout import checkout

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route='charge', methods=['POST'])
@bulkhead.governed
def charge(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = {'cloud': 'azure', 'invocationId': context.invocation_id, 'results': checkout()}
    return func.HttpResponse(json.dumps(body), mimetype='application/json')
