// The API conventions (docs/API-CONVENTIONS.md), checked mechanically on
// what lib/index.ts exports: TypeScript's checker walks every exported
// function, class (static and instance side) and namespace object, and each
// rule below is one loop over those signatures. A new export that breaks a
// convention fails here; an exception is an entry in an allow-list with its
// reason.
import t from 'tap';
import * as path from 'node:path';
import ts from 'typescript';

const ROOT = path.join(__dirname, '..', '..');
const ENTRY = path.join(ROOT, 'lib', 'index.ts');

const config = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile);
const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
const program = ts.createProgram([ENTRY], { ...parsed.options, noEmit: true });
const checker = program.getTypeChecker();
const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(ENTRY)!)!;
const exported = checker.getExportsOfModule(moduleSymbol);

interface Param {
  name: string;
  type: ts.Type;
}
interface Callable {
  /** 'Mapping#read', 'Nvme.open', 'mmap' */
  name: string;
  params: Param[];
  returns: ts.Type;
  decl: ts.Declaration | undefined;
}
interface Klass {
  name: string;
  /** Exported as a value (a class users can `instanceof`), not only as a type. */
  value: boolean;
  instance: ts.Type;
}

const callables: Callable[] = [];
const classes = new Map<string, Klass>();

const isDeprecated = (d: ts.Node | undefined): boolean => d !== undefined && ts.getJSDocTags(d).some((tag) => tag.tagName.text === 'deprecated');

function signaturesOf(name: string, type: ts.Type): void {
  for (const sig of type.getCallSignatures()) {
    // An old call form kept for one release (CHANGELOG.md) is not the API.
    if (isDeprecated(sig.getDeclaration())) continue;
    callables.push({
      name,
      params: sig.getParameters().map((p) => ({ name: p.getName(), type: checker.getTypeOfSymbol(p) })),
      returns: sig.getReturnType(),
      decl: sig.getDeclaration(),
    });
  }
}

function isPublic(p: ts.Symbol): boolean {
  const d = p.valueDeclaration ?? p.declarations?.[0];
  if (d === undefined) return true;
  if (ts.getCombinedModifierFlags(d) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) return false;
  if (p.getName().startsWith('#') || p.getName().startsWith('__#')) return false;
  // @internal members are not the API.
  return !ts.getJSDocTags(d).some((tag) => tag.tagName.text === 'internal') && !/@internal/.test(d.getFullText().slice(0, d.getLeadingTriviaWidth()));
}

function members(owner: string, type: ts.Type, sep: string): void {
  for (const p of checker.getPropertiesOfType(type)) {
    if (!isPublic(p) || p.getName() === 'prototype') continue;
    const pt = checker.getTypeOfSymbol(p);
    signaturesOf(`${owner}${sep}${p.getName()}`, pt);
  }
}

function addClass(name: string, instance: ts.Type, value: boolean): void {
  const prev = classes.get(name);
  if (prev !== undefined) {
    prev.value ||= value;
    return;
  }
  classes.set(name, { name, value, instance });
  members(name, instance, '#');
}

const isClassDecl = (s: ts.Symbol | undefined): boolean => s?.declarations?.some((d) => ts.isClassDeclaration(d)) ?? false;

for (const sym0 of exported) {
  const name = sym0.getName();
  const sym = sym0.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(sym0) : sym0;
  const hasValue = (sym.flags & ts.SymbolFlags.Value) !== 0;
  if (hasValue) {
    const type = checker.getTypeOfSymbol(sym);
    const ctors = type.getConstructSignatures();
    if (ctors.length > 0) {
      addClass(name, ctors[0].getReturnType(), true);
      members(name, type, '.');
    } else if (type.getCallSignatures().length > 0) {
      signaturesOf(name, type);
    } else if (type.flags & ts.TypeFlags.Object) {
      // A namespace object (Rdma, P2pMem, Pci, Drm, Cuda...).
      members(name, type, '.');
    }
  }
  if (sym.flags & ts.SymbolFlags.Type) {
    const declared = checker.getDeclaredTypeOfSymbol(sym);
    if (isClassDecl(declared.getSymbol())) addClass(name, declared, hasValue && checker.getTypeOfSymbol(sym).getConstructSignatures().length > 0);
  }
}

const isNumeric = (ty: ts.Type): boolean => {
  const nn = checker.getNonNullableType(ty);
  if (nn.isUnion()) return nn.types.every(isNumeric);
  return (nn.flags & (ts.TypeFlags.NumberLike | ts.TypeFlags.BigIntLike)) !== 0;
};
const isOptionsType = (p: Param): boolean => p.name === 'options' || /Options\b/.test(checker.typeToString(p.type));
const baseName = (c: Callable) => c.name.replace(/^.*[#.]/, '');

t.ok(callables.length > 150, `the walk found the API (${callables.length} signatures, ${classes.size} classes)`);

// `offset` is an offset into a buffer, view or mapping; a place on a device
// or in a file is `position` (Node's fs). Each `offset` parameter is listed
// here with what it is an offset into, so a new one is a decision.
const OFFSET_INTO_MEMORY = new Set([
  'Mapping#window', // into the mapping
  'Mapping#read', // into the mapping
  'Mapping#write', // into the mapping
  'P2pBuffer#window',
  'P2pBuffer#read',
  'P2pBuffer#write',
  'MemoryRegion#pollByte', // into the region, (offset, value) as Atomics.wait's (index, value)
]);

t.test('offset means an offset into memory; device and file places are position', async (t) => {
  const bad = callables.filter((c) => c.params.some((p) => p.name === 'offset') && !OFFSET_INTO_MEMORY.has(c.name)).map((c) => c.name);
  t.same(bad, [], 'no other parameter is named offset');
  const notNumber = callables.filter((c) => c.params.some((p) => p.name === 'position' && !isNumeric(p.type))).map((c) => c.name);
  t.same(notNumber, [], 'position is a number or bigint');
});

t.test('what, then where: read/write take the data first, then the place', async (t) => {
  const bad = callables
    .filter((c) => /^(read|write)(Sync)?$/.test(baseName(c)) && c.params.length > 0 && ['offset', 'position', 'length'].includes(c.params[0].name))
    .map((c) => `${c.name}(${c.params.map((p) => p.name).join(', ')})`);
  t.same(bad, [], 'no read/write starts with a place or a length');
});

t.test('the options object comes last', async (t) => {
  const bad = callables
    .filter((c) => c.params.findIndex(isOptionsType) !== -1 && c.params.findIndex(isOptionsType) !== c.params.length - 1)
    .map((c) => `${c.name}(${c.params.map((p) => p.name).join(', ')})`);
  t.same(bad, [], 'options is never followed by another parameter');
});

t.test('access flags are an option, never positional', async (t) => {
  const bad = callables.filter((c) => c.params.some((p) => p.name === 'access')).map((c) => c.name);
  t.same(bad, [], 'no parameter named access');
});

t.test('a promise under the plain name, a Sync twin where one exists, in pairs for registration', async (t) => {
  const byName = new Map(callables.map((c) => [c.name, c]));
  const bad: string[] = [];
  for (const c of callables) {
    const isPromise = checker.typeToString(c.returns).startsWith('Promise<');
    if (c.name.endsWith('Sync')) {
      const plain = byName.get(c.name.slice(0, -4));
      if (isPromise) bad.push(`${c.name} returns a promise`);
      if (plain === undefined) bad.push(`${c.name} has no promise form`);
      else if (!checker.typeToString(plain.returns).startsWith('Promise<')) bad.push(`${plain.name} (the twin of ${c.name}) is not a promise`);
    }
    // Registration pins memory: it can take long, so it has both forms.
    if (/^(register[A-Z]\w*|allocMemory)$/.test(baseName(c)) && !c.name.endsWith('Sync') && c.name.includes('#')) {
      if (!isPromise) bad.push(`${c.name} is not a promise`);
      if (!byName.has(`${c.name}Sync`)) bad.push(`${c.name} has no Sync form`);
    }
  }
  t.same([...new Set(bad)], [], 'sync/async pairs');
});

// Not handles: scopes that `using` ends, with their own verb.
const BRACKETS = new Map([['CpuAccess', 'a DMA_BUF_IOCTL_SYNC begin/end bracket: end() and ended']]);

t.test('handles: close(), closed, Symbol.dispose; asyncDispose awaits teardown; exported as classes', async (t) => {
  const bad: string[] = [];
  for (const k of classes.values()) {
    const props = new Map(checker.getPropertiesOfType(k.instance).map((p) => [p.getName(), p]));
    const dispose = [...props.keys()].some((n) => n === '__@dispose@' || /^__@dispose@\d+$/.test(n));
    const asyncDispose = [...props.values()].find((p) => /^__@asyncDispose@\d+$/.test(p.getName()));
    const handle = dispose || props.has('close') || props.has('unmap');
    if (!handle || BRACKETS.has(k.name)) continue;
    if (!props.has('close')) bad.push(`${k.name} has no close()`);
    const closed = props.get('closed');
    if (closed === undefined) bad.push(`${k.name} has no closed`);
    else if (!(checker.getTypeOfSymbol(closed).flags & ts.TypeFlags.BooleanLike)) bad.push(`${k.name}.closed is not a boolean`);
    if (!dispose) bad.push(`${k.name} has no [Symbol.dispose]`);
    if (!k.value) bad.push(`${k.name} is exported as a type only (instanceof needs the class)`);
    // An async dispose that awaits nothing is a sync dispose that lies.
    for (const d of asyncDispose?.declarations ?? []) {
      if (!ts.isMethodDeclaration(d) || d.body === undefined) continue;
      let waits = false;
      const visit = (n: ts.Node): void => {
        if (ts.isAwaitExpression(n) || (ts.isReturnStatement(n) && n.expression !== undefined)) waits = true;
        else ts.forEachChild(n, visit);
      };
      visit(d.body);
      if (!waits) bad.push(`${k.name}[Symbol.asyncDispose] waits for nothing`);
    }
    // One name for one state: other names of `closed` are deprecated aliases.
    for (const alias of ['unmapped', 'disposed', 'destroyed']) {
      const p = props.get(alias);
      if (p !== undefined && !p.declarations?.some(isDeprecated)) {
        bad.push(`${k.name}.${alias} names the closed state again and is not @deprecated`);
      }
    }
  }
  t.same(bad, [], 'every handle has the same shape');
});
