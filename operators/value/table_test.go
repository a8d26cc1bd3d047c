package value

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadTableFormats(t *testing.T) {
	for name, data := range map[string]string{
		"json lines": "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n",
		"json array": `[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]`,
		"csv":        "id,name\n1,a\n2,b\n",
	} {
		rows, err := ReadTable([]byte(data))
		require.NoError(t, err, name)
		require.Len(t, rows, 2, name)
		v, ok := rows[1].Get("name")
		require.True(t, ok, name)
		require.Equal(t, "b", v.Str(), name)
	}
	_, err := ReadTable([]byte("id,name\n1,a,extra\n"))
	require.Error(t, err)
	_, err = ReadTable([]byte(`[1, 2]`))
	require.Error(t, err)
}
