// lib/core/uapi.ts (the struct layouts lib/ packs by hand) against the kernel's
// uapi headers, as native/core/uapi.cc compiled them: sizes and every field's
// offset. Issue 22: make a mistyped layout a test failure.
import t from 'tap';

import { native } from '../../lib/core/native';
import { uapi } from '../../lib/core/uapi';

t.test('every hand-packed struct matches the kernel uapi headers', async (t) => {
  const headers = (native as unknown as { uapiLayouts(): Record<string, { size: number; fields: Record<string, number> }> }).uapiLayouts();
  t.same(Object.keys(uapi).sort(), Object.keys(headers).sort(), 'the same structs on both sides');
  for (const [name, layout] of Object.entries(uapi)) {
    t.same(layout, headers[name], `struct ${name}`);
  }
});
