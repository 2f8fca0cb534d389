import { PayloadTooLargeError } from '../errors.ts';

/**
 * The request body as text, refusing (413) one larger than `limitBytes` without reading
 * more of it than that: by its Content-Length when it gives one, else while streaming.
 */
export async function readTextWithin(req: Request, limitBytes: number): Promise<string> {
  const declared = Number(req.headers.get('content-length') ?? Number.NaN);
  if (declared > limitBytes) throw new PayloadTooLargeError(limitBytes);
  if (!req.body) return '';
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
  return new TextDecoder().decode(Buffer.concat(chunks));
}
