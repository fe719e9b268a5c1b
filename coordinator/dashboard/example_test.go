package dashboard_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"pgtrain/coordinator/dashboard"
)

// The coordinator mounts the handler at dashboard.Path; the page then reads the API with the
// token the user gives it.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET "+dashboard.Path, dashboard.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + dashboard.Path)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	fmt.Println(resp.Header.Get("Content-Security-Policy"))
	// Output:
	// 200 text/html; charset=utf-8
	// default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'
}
