/* ferry.js: the bundled client; served by every mount at <prefix>/ferry.js. */
