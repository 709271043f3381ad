// Calls one destination the sample policy allows and one it does not. With the Bulkhead layer
// attached, the second fails with ERR_BULKHEAD_DENIED and a deny record reaches the control API.
const ALLOWED = process.env.SAMPLE_ALLOWED_URL ?? 'http://localstack:4566/_localstack/health';
const FORBIDDEN = process.env.SAMPLE_FORBIDDEN_URL ?? 'https://exfil.attacker.test/upload';

async function attempt(url) {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    return { url, ok: true, status: response.status };
  } catch (error) {
    const cause = error.cause ?? error;
    return { url, ok: false, code: cause.code ?? error.name, message: cause.message };
  }
}

export const handler = async () => ({ allowed: await attempt(ALLOWED), forbidden: await attempt(FORBIDDEN) });
