// JSON that keeps whole numbers exact: the timer params distinguish `5` from `5.0` and
// `1.5`, and hold values past 2^53, which `JSON.parse` turns into the same doubles.
//
// parse(text): like JSON.parse, except that a number written without a fraction or an
// exponent becomes a BigInt; any other number is a Number. Objects have no prototype, so a
// key such as "__proto__" is an ordinary key.
// stringify(value): compact JSON text; BigInts are written as plain integers.

export function parse(text) {
  JSON.parse(text); // throws SyntaxError on anything that is not JSON
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = Object.create(null);
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        const key = string();
        ws();
        i++; // ':'
        obj[key] = value();
        ws();
        if (text[i++] === "}") return obj; // else ','
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i++] === "]") return arr; // else ','
      }
    }
    if (c === '"') return string();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    const start = i;
    while (i < text.length && "+-0123456789.eE".includes(text[i])) i++;
    const lexeme = text.slice(start, i);
    return /^-?\d+$/.test(lexeme) ? BigInt(lexeme) : Number(lexeme);
  };
  const string = () => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  return value();
}

export function stringify(v) {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return "[" + v.map(stringify).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).map((k) => JSON.stringify(k) + ":" + stringify(v[k])).join(",") + "}";
  }
  return JSON.stringify(v) ?? "null";
}
