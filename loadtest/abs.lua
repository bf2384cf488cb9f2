-- wrk script: send absolute-form requests (as to a forward proxy) for the URL in $TARGET.
wrk.path = os.getenv("TARGET")
