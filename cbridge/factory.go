package main

/*
#include "bridge.h"
*/
import "C"

import (
	"encoding/json"

	"github.com/goeryx/goeryx/goeryx"
)

// owner is what a sandbox or session is created from: the runtime, or a factory (whose handle
// sandbox_new and session_new accept in place of the runtime's) with the configuration's
// "site_packages" override.
type owner struct {
	rt           *goeryx.Runtime
	factory      *goeryx.Factory
	sitePackages string
}

func lookupOwner(h C.longlong, config []byte) (owner, error) {
	if f, err := lookup[*goeryx.Factory](h); err == nil {
		var extra struct {
			SitePackages string `json:"site_packages"`
		}
		_ = json.Unmarshal(config, &extra) // ParseConfig reports a malformed configuration
		return owner{factory: f, sitePackages: extra.SitePackages}, nil
	}
	rt, err := lookup[*goeryx.Runtime](h)
	return owner{rt: rt}, err
}

type factorySpec struct {
	SitePackages string   `json:"site_packages"`
	Packages     []string `json:"packages"`
	Imports      []string `json:"imports"`
	SetupCode    string   `json:"setup_code"`
	Cache        bool     `json:"cache"`
	Path         string   `json:"path"`
}

func parseSpec(spec *C.char, n C.Py_ssize_t) (*factorySpec, error) {
	var s factorySpec
	if err := json.Unmarshal(goBytes(spec, n), &s); err != nil {
		return nil, &goeryx.Error{Kind: goeryx.KindValue, Message: "invalid factory specification: " + err.Error()}
	}
	return &s, nil
}

func registerFactory(f *goeryx.Factory, err error) finish {
	if err != nil {
		return raise(err)
	}
	return returnInt(register(f, nil))
}

//export goFactoryNew
func goFactoryNew(rtHandle C.longlong, spec *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(rtHandle, func(rt *goeryx.Runtime) finish {
		s, err := parseSpec(spec, n)
		if err != nil {
			return raise(err)
		}
		return registerFactory(rt.NewFactory(goeryx.FactoryOptions{
			SitePackages: s.SitePackages, Packages: s.Packages, Imports: s.Imports, SetupCode: s.SetupCode, Cache: s.Cache}))
	})
}

//export goFactoryLoad
func goFactoryLoad(rtHandle C.longlong, spec *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(rtHandle, func(rt *goeryx.Runtime) finish {
		s, err := parseSpec(spec, n)
		if err != nil {
			return raise(err)
		}
		return registerFactory(rt.LoadFactory(s.Path, s.SitePackages, s.Cache))
	})
}

//export goFactoryFromBytes
func goFactoryFromBytes(rtHandle C.longlong, data *C.char, size C.Py_ssize_t, spec *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(rtHandle, func(rt *goeryx.Runtime) finish {
		s, err := parseSpec(spec, n)
		if err != nil {
			return raise(err)
		}
		return registerFactory(rt.FactoryFromBytes(goBytes(data, size), s.SitePackages, s.Cache))
	})
}

//export goFactoryToBytes
func goFactoryToBytes(h C.longlong) C.uintptr_t {
	return with(h, func(f *goeryx.Factory) finish { return returnBytes(f.Bytes()) })
}

//export goFactorySize
func goFactorySize(h C.longlong) C.uintptr_t {
	return with(h, func(f *goeryx.Factory) finish {
		size, err := f.Size()
		if err != nil {
			return raise(err)
		}
		return returnInt(size)
	})
}

//export goFactorySave
func goFactorySave(h C.longlong, path *C.char, n C.Py_ssize_t) C.uintptr_t {
	return with(h, func(f *goeryx.Factory) finish { return returnNone(f.Save(goString(path, n))) })
}

//export goFactoryImports
func goFactoryImports(h C.longlong) C.uintptr_t {
	return with(h, func(f *goeryx.Factory) finish { return returnStrings(f.Imports(), nil) })
}

//export goFactoryClose
func goFactoryClose(h C.longlong) C.uintptr_t {
	return with(h, func(f *goeryx.Factory) finish { f.Close(); return returnNone(nil) })
}
