package sqldb

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
)

// StringList is a list of strings kept in one TEXT column as a JSON array,
// the same way in both stores: pass StringList(lines) as an argument and
// (*StringList)(&lines) as a Scan destination. A nil or empty list is
// stored as "[]", never "null", and read back as an empty list.
//
// JSON escapes NUL bytes and invalid UTF-8, so any process output is
// storable (see Text).
type StringList []string

// Value encodes the list as a JSON array.
func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		return "[]", nil
	}
	b, err := json.Marshal([]string(l))
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// Scan decodes a JSON array stored by Value.
func (l *StringList) Scan(src any) error {
	var data []byte
	switch v := src.(type) {
	case string:
		data = []byte(v)
	case []byte:
		data = v
	case nil:
		*l = StringList{}
		return nil
	default:
		return fmt.Errorf("string list: cannot scan %T", src)
	}
	var out []string
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("string list: %w", err)
	}
	if out == nil {
		out = []string{}
	}
	*l = out
	return nil
}
