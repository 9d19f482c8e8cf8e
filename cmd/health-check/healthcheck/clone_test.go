package healthcheck

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestCheckFlagsCloneSharesNothing fills every field of checkFlags — a field added later included —
// clones it, and walks both: no slice, map or pointer of the clone may share the original's memory,
// or one check of serve could change another's flags (a per-check -spiffe-id once did).
func TestCheckFlagsCloneSharesNothing(t *testing.T) {
	var shared checkFlags
	fillEveryField(t, "checkFlags", reflect.ValueOf(&shared).Elem())
	clone := shared.clone()
	assert.Equal(t, shared, clone, "a copy")
	assertSharesNothing(t, "checkFlags", reflect.ValueOf(shared), reflect.ValueOf(clone))
}

// settable is v, a field that may be unexported, in a form that can be set.
func settable(v reflect.Value) reflect.Value {
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// fillEveryField gives v and everything in it a value that is not zero: a slice gets one element and
// spare capacity, the memory an append would share.
func fillEveryField(t *testing.T, path string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillEveryField(t, path+"."+v.Type().Field(i).Name, settable(v.Field(i)))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 4))
		fillEveryField(t, path+"[0]", v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		key, value := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillEveryField(t, path+"[key]", key)
		fillEveryField(t, path+"[value]", value)
		v.SetMapIndex(key, value)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillEveryField(t, path+"*", v.Elem())
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	default:
		t.Fatalf("%s: a %s: teach this test to fill it and clone() to copy it", path, v.Kind())
	}
}

// assertSharesNothing walks a and b, of one type, and fails for any slice, map or pointer that points
// into the same memory in both.
func assertSharesNothing(t *testing.T, path string, a, b reflect.Value) {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			assertSharesNothing(t, path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
		}
	case reflect.Slice:
		if a.Cap() > 0 && a.Pointer() == b.Pointer() {
			t.Errorf("%s: the clone shares the slice", path)
		}
		for i := range min(a.Len(), b.Len()) {
			assertSharesNothing(t, path+"[i]", a.Index(i), b.Index(i))
		}
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			t.Errorf("%s: the clone shares the map", path)
		}
		for _, key := range a.MapKeys() {
			if value := b.MapIndex(key); value.IsValid() {
				assertSharesNothing(t, path+"[key]", a.MapIndex(key), value)
			}
		}
	case reflect.Pointer:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			t.Errorf("%s: the clone shares the pointer", path)
		}
	}
}
