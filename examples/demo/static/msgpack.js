// A small MessagePack codec for the chat: nil, booleans, integers, floats, strings, binary,
// arrays and maps (https://github.com/msgpack/msgpack/blob/master/spec.md). No extension
// types: a value it cannot handle raises an Error that says which.

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export function encode(value) {
  const out = [];
  write(out, value);
  return new Uint8Array(out);
}

// Big-endian bytes of an unsigned or signed integer, or of a float64.
function uint(size, n) {
  const view = new DataView(new ArrayBuffer(size));
  if (size === 1) view.setUint8(0, n);
  else if (size === 2) view.setUint16(0, n);
  else if (size === 4) view.setUint32(0, n);
  else view.setBigUint64(0, BigInt(n));
  return [...new Uint8Array(view.buffer)];
}

function int(size, n) {
  const view = new DataView(new ArrayBuffer(size));
  if (size === 1) view.setInt8(0, n);
  else if (size === 2) view.setInt16(0, n);
  else if (size === 4) view.setInt32(0, n);
  else view.setBigInt64(0, BigInt(n));
  return [...new Uint8Array(view.buffer)];
}

function float64(n) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, n);
  return [...new Uint8Array(view.buffer)];
}

function writeInt(out, n) {
  if (n >= 0) {
    if (n < 0x80) out.push(n); // positive fixint
    else if (n < 0x100) out.push(0xcc, n);
    else if (n < 0x10000) out.push(0xcd, ...uint(2, n));
    else if (n < 0x100000000) out.push(0xce, ...uint(4, n));
    else out.push(0xcf, ...uint(8, n));
  } else if (n >= -32) out.push(n & 0xff); // negative fixint
  else if (n >= -0x80) out.push(0xd0, ...int(1, n));
  else if (n >= -0x8000) out.push(0xd1, ...int(2, n));
  else if (n >= -0x80000000) out.push(0xd2, ...int(4, n));
  else out.push(0xd3, ...int(8, n));
}

// A length header: the fix form when it fits, else the 8-, 16- or 32-bit form (null: none).
function header(out, length, fix, fixMax, code8, code16, code32) {
  if (length <= fixMax) out.push(fix | length);
  else if (code8 !== null && length < 0x100) out.push(code8, length);
  else if (length < 0x10000) out.push(code16, ...uint(2, length));
  else out.push(code32, ...uint(4, length));
}

function write(out, value) {
  if (value === null || value === undefined) out.push(0xc0);
  else if (value === false || value === true) out.push(value ? 0xc3 : 0xc2);
  else if (typeof value === "number") {
    if (Number.isSafeInteger(value)) writeInt(out, value);
    else out.push(0xcb, ...float64(value));
  } else if (typeof value === "string") {
    const bytes = textEncoder.encode(value);
    header(out, bytes.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
    out.push(...bytes);
  } else if (value instanceof Uint8Array) {
    header(out, value.length, 0, -1, 0xc4, 0xc5, 0xc6);
    out.push(...value);
  } else if (Array.isArray(value)) {
    header(out, value.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const item of value) write(out, item);
  } else if (typeof value === "object") {
    const entries = Object.entries(value);
    header(out, entries.length, 0x80, 15, null, 0xde, 0xdf);
    for (const [key, item] of entries) {
      write(out, key);
      write(out, item);
    }
  } else throw new Error(`MessagePack: cannot encode a ${typeof value}`);
}

export function decode(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const take = (n) => {
    if (at + n > bytes.length) throw new Error(`MessagePack: truncated at byte ${at}`);
    const start = at;
    at += n;
    return start;
  };
  // 64-bit integers become Numbers: exact up to 2**53.
  const u = (n) => {
    const i = take(n);
    if (n === 1) return view.getUint8(i);
    if (n === 2) return view.getUint16(i);
    return n === 4 ? view.getUint32(i) : Number(view.getBigUint64(i));
  };
  const s = (n) => {
    const i = take(n);
    if (n === 1) return view.getInt8(i);
    if (n === 2) return view.getInt16(i);
    return n === 4 ? view.getInt32(i) : Number(view.getBigInt64(i));
  };
  const str = (n) => textDecoder.decode(bytes.subarray(take(n), at));
  const bin = (n) => bytes.slice(take(n), at);
  const array = (n) => Array.from({ length: n }, () => item());
  const map = (n) => {
    const result = {};
    for (let k = 0; k < n; k++) result[item()] = item();
    return result;
  };
  const item = () => {
    const code = u(1);
    if (code < 0x80) return code;
    if (code < 0x90) return map(code & 0x0f);
    if (code < 0xa0) return array(code & 0x0f);
    if (code < 0xc0) return str(code & 0x1f);
    if (code >= 0xe0) return code - 0x100;
    switch (code) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(u(1));
      case 0xc5: return bin(u(2));
      case 0xc6: return bin(u(4));
      case 0xca: return view.getFloat32(take(4));
      case 0xcb: return view.getFloat64(take(8));
      case 0xcc: return u(1);
      case 0xcd: return u(2);
      case 0xce: return u(4);
      case 0xcf: return u(8);
      case 0xd0: return s(1);
      case 0xd1: return s(2);
      case 0xd2: return s(4);
      case 0xd3: return s(8);
      case 0xd9: return str(u(1));
      case 0xda: return str(u(2));
      case 0xdb: return str(u(4));
      case 0xdc: return array(u(2));
      case 0xdd: return array(u(4));
      case 0xde: return map(u(2));
      case 0xdf: return map(u(4));
      default: throw new Error(`MessagePack: type 0x${code.toString(16)} is not supported here`);
    }
  };
  const value = item();
  if (at !== bytes.length) throw new Error(`MessagePack: ${bytes.length - at} bytes after the value`);
  return value;
}
