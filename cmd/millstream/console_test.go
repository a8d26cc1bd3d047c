package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/millstream/millstream/operators/plan"
	"github.com/millstream/millstream/operators/sql"
)

// A device id that is markup (MQTT topic levels may hold it).
const consoleEvilDevice = "<img src=x onerror=alert(1)>"

// The editor's query with a syntax error on line 3 (a second '>').
const consoleBadQuery = "SELECT deviceId, temperature\nINTO alerts\nFROM telemetry WHERE temperature > > 90\n"

const consoleSettings = `{"inputs": [{"name": "telemetry", "topic": "devices/+/messages/events/#", "deviceId": "topic:1"}],
 "outputs": [{"name": "alerts", "log": {"prefix": "ALERT"}}]}`

// TestConsoleInChromium loads the console of a running gateway whose
// admin API takes tokens in headless Chromium: the page asks for the
// token, then goes live; a job deployed through the editor counts the
// rows published to the embedded broker on the Jobs page; a device whose
// id is HTML shows as text; and a query with a syntax error on line 3 is
// marked at that line and column.
func TestConsoleInChromium(t *testing.T) {
	const token = "mst_console_test_token"
	rg := consoleGateway(t, token)
	ctx := browser(t, 90*time.Second)
	url := "http://" + rg.AdminAddr() + "/"

	// Sign in: the token goes from the form into the tab, never the URL.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`))))
	waitJS(t, ctx, 15*time.Second, `document.querySelector('#live').textContent === 'live'`,
		`document.querySelector('#live').textContent + ' / ' + document.querySelector('#login-error').textContent`)
	require.NotContains(t, evalJS[string](t, ctx, `location.href`), token)

	// Deploy through the editor.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="editor"]`)),
		chromedp.WaitVisible(chromedp.CSS("#sql")),
		chromedp.SetValue(chromedp.CSS("#job-name"), "console-e2e"),
		chromedp.SetValue(chromedp.CSS("#sql"), "SELECT deviceId, temperature\nINTO alerts\nFROM telemetry\n"),
		chromedp.SetValue(chromedp.CSS("#settings"), consoleSettings),
		chromedp.Click(chromedp.CSS("#deploy"))))
	waitJS(t, ctx, 15*time.Second, `document.querySelector('#deploy-result').textContent === 'Deployed console-e2e'`,
		`document.querySelector('#deploy-result').textContent + ' / ' + document.querySelector('#deploy-error').textContent`)

	// Rows published over MQTT are counted on the Jobs page.
	publish(t, rg.BrokerAddr(), "press-1", 25)
	publish(t, rg.BrokerAddr(), consoleEvilDevice, 2)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="jobs"]`))))
	row := `document.querySelector('tr[data-job="console-e2e"]')`
	waitJS(t, ctx, 20*time.Second, row+`?.querySelector('.in-total').textContent === '27' && `+row+`.querySelector('.out-total').textContent === '27'`,
		`(`+row+`?.textContent) || document.querySelector('#jobs').textContent`)

	// Device ids are attacker controlled: shown as text, never as HTML.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="devices"]`))))
	waitJS(t, ctx, 10*time.Second, `[...document.querySelectorAll('#devices td')].some(td => td.textContent === '`+consoleEvilDevice+`')`,
		`document.querySelector('#devices').textContent`)
	require.Zero(t, evalJS[int](t, ctx, `document.querySelectorAll('#devices img').length`), "a device id became markup")

	// A syntax error is placed at its line and column.
	var want *sql.Error
	_, err := plan.FromSQL(consoleBadQuery)
	require.True(t, errors.As(err, &want), "%v", err)
	require.Equal(t, sql.Pos{Line: 3, Col: 36}, want.Pos)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="editor"]`)),
		chromedp.SetValue(chromedp.CSS("#sql"), consoleBadQuery),
		chromedp.Click(chromedp.CSS("#deploy"))))
	waitJS(t, ctx, 15*time.Second, `!document.querySelector('#error-marker').hidden`,
		`document.querySelector('#deploy-result').textContent + ' / ' + document.querySelector('#deploy-error').textContent`)
	q := func(expr string) string { return evalJS[string](t, ctx, expr) }
	line, column := q(`document.querySelector('#error-marker').dataset.line`), q(`document.querySelector('#error-marker').dataset.column`)
	where := q(`document.querySelector('#error-where').textContent`)
	gutter := q(`[...document.querySelectorAll('#gutter div.err')].map(d => d.textContent).join(',')`)
	excerpt := q(`document.querySelector('#error-excerpt').textContent`)
	require.Equal(t, "3", line)
	require.Equal(t, strconv.Itoa(want.Pos.Col), column)
	require.Equal(t, "Line 3, column 36", where)
	require.Equal(t, "3", gutter, "the gutter marks line 3 only")
	require.Contains(t, excerpt, "3 | FROM telemetry WHERE temperature > > 90\n"+strings.Repeat(" ", len("3 | ")+35)+"^",
		"the caret stands under the second '>'")
	require.True(t, evalJS[bool](t, ctx, `!document.querySelector('#caret').hidden`), "the bar under the column")
	selStart := evalJS[int](t, ctx, `document.querySelector('#sql').selectionStart`)
	require.Equal(t, len("SELECT deviceId, temperature\nINTO alerts\n")+35, selStart, "the cursor is put at the error")
}
