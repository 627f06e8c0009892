package goeryx

import (
	"context"
	"testing"
)

func TestDebug(t *testing.T) {
	rt := runtimeForTest(t)
	sb, _ := rt.NewSandbox(&Config{}, nil, nil)
	for _, code := range []string{"import asyncio, traceback\nasync def main():\n  await asyncio.sleep(0.01)\n  return 5\ntry:\n  print(asyncio.run(main()))\nexcept BaseException:\n  traceback.print_exc(file=__import__('sys').stdout)"} {
		res, err := sb.Execute(context.Background(), code)
		if err != nil {
			t.Logf("%q -> ERR %v", code, err)
		} else {
			t.Logf("%q -> %s %q", code, res.Stdout, res.Stderr)
		}
	}
}
