package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/parlor-dev/parlor/internal/apperr"
)

// nulMessage is what a text input holding U+0000 is told: PostgreSQL's text type cannot
// store it (SQLSTATE 22021), so it is refused before any handler sees it. (Invalid UTF-8
// never gets this far: the JSON decoder turns it into U+FFFD.)
const nulMessage = "may not contain the NUL character (U+0000)"

// nullMessage is what a null the contract does not allow is told.
const nullMessage = "may not be null"

// textInputs refuses, with a 400 problem naming each field, a request whose path
// parameters, query parameters or JSON body hold a NUL character, so no such text reaches
// PostgreSQL. It runs after the request validator, which reads only the body's first JSON
// value and fills a field's default in for an explicit null; so it also refuses a body
// with anything after that value, and a null where the contract does not allow one
// ({"entry_price": null} is not "use the default").
func textInputs(spec *openapi3.T) echo.MiddlewareFunc {
	bodies := map[string]*openapi3.Schema{}
	for route, op := range operations(spec) {
		if op.RequestBody != nil && op.RequestBody.Value != nil {
			if mt := op.RequestBody.Value.Content.Get(echo.MIMEApplicationJSON); mt != nil && mt.Schema != nil {
				bodies[route] = mt.Schema.Value
			}
		}
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			var fields []apperr.FieldError
			add := func(field string) {
				fields = append(fields, apperr.FieldError{Field: field, Message: nulMessage})
			}
			for i, name := range c.ParamNames() {
				if i < len(c.ParamValues()) && strings.IndexByte(c.ParamValues()[i], 0) >= 0 {
					add("path." + name)
				}
			}
			query := c.QueryParams()
			names := make([]string, 0, len(query))
			for name := range query {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				for _, v := range query[name] {
					if strings.IndexByte(v, 0) >= 0 || strings.IndexByte(name, 0) >= 0 {
						add("query." + name)
						break
					}
				}
			}
			if r := c.Request(); r.Body != nil && r.ContentLength != 0 {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					return err
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				if schema := bodies[r.Method+" "+c.Path()]; schema != nil {
					if !json.Valid(body) {
						return &apperr.Error{Code: apperr.Invalid, Message: "the body must be one JSON value, with nothing after it",
							Fields: []apperr.FieldError{{Field: "body", Message: "must be one JSON value"}}}
					}
					// Most bodies skip the walk: a JSON string holds NUL only as the escape
					// \u0000, and a null is spelled null.
					if bytes.Contains(body, []byte(`\u0000`)) || bytes.Contains(body, []byte("null")) {
						var v any
						if json.Unmarshal(body, &v) == nil {
							nulFields("body", v, add)
							nullFields("body", v, schema, func(field string) {
								fields = append(fields, apperr.FieldError{Field: field, Message: nullMessage})
							})
						}
					}
				}
			}
			if len(fields) > 0 {
				message := "text " + nulMessage
				if fields[0].Message == nullMessage {
					message = "a field " + nullMessage + " (leave it out for its default)"
				}
				return &apperr.Error{Code: apperr.Invalid, Message: message, Fields: fields}
			}
			return next(c)
		}
	}
}

// nulFields reports the path of every string (or object key) under v that holds a NUL.
func nulFields(path string, v any, add func(string)) {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			add(path)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if strings.IndexByte(k, 0) >= 0 {
				add(path)
				continue
			}
			nulFields(path+"."+k, v[k], add)
		}
	case []any:
		for i, e := range v {
			nulFields(path+"."+strconv.Itoa(i), e, add)
		}
	}
}

// nullFields reports the path of every null under v where schema does not allow one. (A
// property the schema does not know is the validator's to refuse.)
func nullFields(path string, v any, schema *openapi3.Schema, add func(string)) {
	if schema == nil {
		return
	}
	switch v := v.(type) {
	case nil:
		if !schema.Nullable {
			add(path)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if p := schema.Properties[k]; p != nil {
				nullFields(path+"."+k, v[k], p.Value, add)
			}
		}
	case []any:
		if schema.Items != nil {
			for i, e := range v {
				nullFields(path+"."+strconv.Itoa(i), e, schema.Items.Value, add)
			}
		}
	}
}
