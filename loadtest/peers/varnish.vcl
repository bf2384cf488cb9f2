vcl 4.1;
# Varnish as a caching forward proxy for loadtest/peers.sh: absolute-form URLs are cut to
# their path and sent to the test's origin.
backend origin { .host = "127.0.0.1"; .port = "@ORIGIN@"; }
sub vcl_recv {
  set req.url = regsub(req.url, "^http://[^/]+", "");
  set req.backend_hint = origin;
}
sub vcl_backend_response { set beresp.ttl = 1h; }
