/**
 * The container health check: `node listener/healthcheck.ts <health port>` exits 0 while the
 * listener answers `GET /livez`, 1 otherwise. The Dockerfile's HEALTHCHECK and the ECS task
 * definition (infra/listener-service.ts) both run {@link healthCheckCommand}. It asks for liveness,
 * not readiness: a storage outage takes a task out of the load balancer (`/healthz`), but must not
 * make ECS replace every task.
 */
const SCRIPT = 'listener/healthcheck.ts';

/** The command, relative to the image's working directory. */
export function healthCheckCommand(port: number): string[] {
  return ['node', SCRIPT, String(port)];
}

if (import.meta.main) {
  const port = Number(process.argv[2]);
  fetch(`http://127.0.0.1:${port}/livez`, { signal: AbortSignal.timeout(4000) }).then(
    (response) => process.exit(response.ok ? 0 : 1),
    () => process.exit(1),
  );
}
