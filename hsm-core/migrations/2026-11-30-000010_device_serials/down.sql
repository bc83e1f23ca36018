DROP TABLE device_serials;
