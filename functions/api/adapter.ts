import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { ApiRequest, ApiResponse } from '../../core/control/index.ts';

/**
 * An API Gateway HTTP API event (payload format 2.0) as the API handler takes it. Header names
 * arrive lowercased; repeated query parameters arrive comma-joined, and the API takes none.
 */
export function fromApiGatewayEvent(event: APIGatewayProxyEventV2): ApiRequest {
  const body =
    event.body === undefined
      ? null
      : event.isBase64Encoded
        ? Buffer.from(event.body, 'base64').toString('utf8')
        : event.body;
  return {
    method: event.requestContext.http.method,
    path: event.rawPath,
    query: event.queryStringParameters ?? {},
    headers: event.headers,
    body,
  };
}

/** The handler's response as an HTTP API result (status, headers, body as is). */
export function toApiGatewayResult(response: ApiResponse): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: response.status,
    headers: response.headers,
    body: response.body,
    isBase64Encoded: false,
  };
}
