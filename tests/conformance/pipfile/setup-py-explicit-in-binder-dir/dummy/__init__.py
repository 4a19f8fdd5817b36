VALUE = "dummy"
