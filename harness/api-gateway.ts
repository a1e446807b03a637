import { S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';

/**
 * An HTTP API request (payload format 2.0) as API Gateway hands it to a function: header names
 * lowercased, the query both raw and parsed, a JSON body as text.
 */
export function apiGatewayEvent(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): APIGatewayProxyEventV2 {
  const [rawPath, rawQueryString = ''] = path.split('?') as [string, string?];
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers: { 'content-type': 'application/json', ...headers },
    ...(rawQueryString
      ? { queryStringParameters: Object.fromEntries(new URLSearchParams(rawQueryString)) }
      : {}),
    requestContext: {
      accountId: '123456789012',
      apiId: 'api1',
      domainName: 'api1.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'api1',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '198.51.100.1', userAgent: 'test' },
      requestId: 'r1',
      routeKey: '$default',
      stage: '$default',
      time: '04/Dec/2026:10:00:00 +0000',
      timeEpoch: 1_796_378_400_000,
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    isBase64Encoded: false,
  };
}

/** An S3 client for the API function's links: presigning is local arithmetic, so nothing reaches its endpoint. */
export function presignOnlyS3Client(): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    forcePathStyle: true,
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
  });
}
