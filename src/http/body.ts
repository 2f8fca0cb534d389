import { InvalidRequestError, PayloadTooLargeError } from '../core/errors.ts';

/**
 * The request body's bytes, exactly as sent, refusing (413) one larger than `limitBytes`
 * without reading more of it than that: by its Content-Length when it gives one, else
 * while streaming.
 */
export async function readBytesWithin(req: Request, limitBytes: number): Promise<Buffer> {
  const declared = Number(req.headers.get('content-length') ?? Number.NaN);
  if (declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  if (!req.body) return Buffer.alloc(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limitBytes) {
      await reader.cancel();
      throw new PayloadTooLargeError(limitBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** The body as text (see readBytesWithin); bytes that are not UTF-8 become U+FFFD. */
export async function readTextWithin(req: Request, limitBytes: number): Promise<string> {
  return new TextDecoder().decode(await readBytesWithin(req, limitBytes));
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as UTF-8 text, exactly: null if they are not UTF-8. A byte-order mark is kept
 *  (TextDecoder would drop it by default), so the text is what was signed, no more. */
export function strictUtf8Text(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

/** A request body that must be a JSON object when there is one: its fields, or {} for
 *  no body at all; anything else is 400 `Invalid JSON body` (a client that sent what it
 *  meant broken is told so, never served as if it had sent nothing). */
export function jsonObjectBody(text: string): Readonly<Record<string, unknown>> {
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new InvalidRequestError('Invalid JSON body');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidRequestError('Invalid JSON body');
  return body as Record<string, unknown>;
}
